"""margin-balance's own codes, read before the common table (``okx/errors.py``)."""

from webhook_app.okx.errors import OkxRefused

MARGIN_OUTCOMES = {  # code -> (error, seconds to wait first)
    "51008": (OkxRefused, 0.0),  # insufficient balance: a reduce larger than what the bot holds
    "51340": (OkxRefused, 0.0),  # used margin must be greater than a minimum
}
