"""Entry point for gunicorn (see Procfile and gunicorn.conf.py)."""
from webhook_app import create_app, start_delivery

# Started at once, not on the first alert: alerts queued by a previous process are sent now.
app = start_delivery(create_app())
