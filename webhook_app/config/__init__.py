"""Settings, read from the environment once at startup, into frozen sections of one ``Config``.

Every value is parsed explicitly by our own parsers (``values``; never ``json.loads``, unlike
Flask's ``from_prefixed_env``), and a bad value stops the start with a ``ConfigError`` naming the
variable, every problem at once, one line each (``reader``). Secret values never appear in an
error message. ``sections``: the sections; ``environment``: one reader per section;
``accounts``: the OKX accounts and the rules between them."""

from webhook_app.config.reader import ConfigError
from webhook_app.config.sections import ACCOUNT_VARIABLE_SUFFIXES, DEFAULT_ACCOUNT, Config, OkxAccount
from webhook_app.config.values import TRADINGVIEW_ADDRESSES, database_passwords, redacted_url

__all__ = [
    "ACCOUNT_VARIABLE_SUFFIXES",
    "DEFAULT_ACCOUNT",
    "TRADINGVIEW_ADDRESSES",
    "Config",
    "ConfigError",
    "OkxAccount",
    "database_passwords",
    "redacted_url",
]
