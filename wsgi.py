"""Entry point for gunicorn (see Procfile and gunicorn.conf.py)."""

import sys

from webhook_app import create_app, start_delivery
from webhook_app.journal import JournalInUse

try:
    # Started at once, not on the first alert: queued alerts are sent now.
    app = start_delivery(create_app())
except JournalInUse as exc:
    # A second sender on one SQLite file: refuse to start rather than pace to a second rate limit.
    print(f"configuration error: DATABASE_URL: {exc}", file=sys.stderr, flush=True)
    sys.exit(3)  # gunicorn's "worker failed to boot": the master stops too
