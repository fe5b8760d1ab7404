"""TradingView alerts -> OKX signal-bot margin changes. ``create_app`` wires the parts."""
from __future__ import annotations

import logging
from typing import Optional

from flask import Flask

from .config import Config, ConfigError
from .delivery import Delivery, RateLimiter
from .journal import Journal, JournalUnavailable
from .logs import configure_logging
from .okx import OkxClient
from .protection import Protection

__all__ = ["create_app", "Config"]


def create_app(config: Optional[Config] = None) -> Flask:
    """Build the app from ``config``, or from the environment when none is given.

    The delivery thread starts on the first alert, or at once through ``start_delivery``
    (wsgi.py does that, so queued alerts left by a previous process are sent at start)."""
    config = config or Config.from_env()
    log = configure_logging(config.secret_values)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    app.json.sort_keys = False

    try:
        journal = Journal.from_url(config.database_url)
    except JournalUnavailable as exc:
        raise ConfigError("DATABASE_URL", str(exc)) from None
    client = OkxClient(config.okx_base_url, config.okx_api_key, config.okx_api_secret,
                       config.okx_api_passphrase, demo=config.okx_demo, dry_run=config.dry_run,
                       connect_timeout=config.okx_connect_timeout, read_timeout=config.okx_read_timeout,
                       pool_size=min(max(config.okx_rate_limit, 4), 32))
    limiter = None if config.dry_run else RateLimiter(config.okx_rate_limit, config.okx_rate_window)
    delivery = Delivery(journal, client, limiter, max_attempts=config.okx_max_attempts,
                        senders=min(max(config.okx_rate_limit, 4), 32),
                        retention=config.retention_days * 86400)

    from . import cli, web  # imported here: they are the top of the one-way flow

    protection = Protection(config)
    app.extensions["webhook"] = web.Services(config=config, journal=journal, delivery=delivery,
                                             protection=protection)
    app.register_blueprint(web.bp)
    cli.register(app)
    _announce(config, log)
    log.info("%s", protection.describe())
    return app


def start_delivery(app: Flask) -> Flask:
    app.extensions["webhook"].delivery.start()
    return app


def _announce(config: Config, log: logging.Logger) -> None:
    if config.dry_run:
        reason = "DRY_RUN=1" if config.has_okx_credentials else "no OKX credentials are set"
        log.warning("DRY RUN (%s): alerts are checked, journaled and answered, but NOTHING is sent to OKX",
                    reason)
    else:
        log.info("live: forwarding to %s%s, at most %d requests per %g s", config.okx_base_url,
                 " (demo trading)" if config.okx_demo else "", config.okx_rate_limit, config.okx_rate_window)
    if config.webhook_secret_source == "generated":
        # Printed, not logged: the log scrubber would (rightly) hide it. Dry-run only.
        print(f"Generated a webhook secret for this dry run (kept in the instance folder): "
              f"{config.webhook_secret}\nPut it in your alert message as \"secret\".", flush=True)
    elif config.webhook_secret_source == "stored":
        log.info("using the dry-run webhook secret generated earlier (instance/webhook_secret)")
