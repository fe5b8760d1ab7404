"""Entry point for gunicorn (see Procfile and gunicorn.conf.py)."""

import sys

from webhook_app import Config, ConfigError, _refuse, create_app, start_delivery
from webhook_app.journal import JournalInUse

try:
    # The web process's config: the only one that makes (and prints) a dry-run webhook secret.
    config = Config.from_env()
    # Started at once, not on the first alert: queued alerts are sent now.
    app = start_delivery(create_app(config))
except ConfigError as exc:  # preflight (gunicorn.conf.py) checked it; the database may have gone since
    _refuse(exc, "the service did not start", status=3)  # gunicorn's "worker failed to boot": the master stops
except JournalInUse as exc:
    # A second sender on one SQLite file: refuse to start rather than pace to a second rate limit.
    print(f"configuration error: DATABASE_URL: {exc}", file=sys.stderr, flush=True)
    sys.exit(3)  # gunicorn's "worker failed to boot": the master stops too
