"""Entry point for gunicorn (see Procfile and gunicorn.conf.py, whose hooks start and stop the workers)."""

from webhook_app import Config, ConfigError, create_app, refuse
from webhook_app.startup import read_dotenv

read_dotenv()  # gunicorn.conf.py's preflight read it already; a gunicorn started without it has not
try:
    # The web process's config: the only one that makes (and prints) a dry-run webhook secret.
    app = create_app(Config.from_env())
except ConfigError as exc:  # preflight (gunicorn.conf.py) checked it; the database may have gone since
    refuse(exc, "the service did not start", status=3)  # gunicorn's "worker failed to boot": the master stops
