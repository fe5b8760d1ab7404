"""TradingView alerts -> OKX signal-bot margin changes. ``create_app`` builds the app: the
configuration, the logging, the service's parts (``wiring``), the routes (``surfaces``)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from flask import Flask

from webhook_app.clock import SYSTEM_CLOCK, Clock
from webhook_app.config import Config, ConfigError
from webhook_app.journal.postgres.budget import COMMAND_CONNECTIONS
from webhook_app.logs import configure_logging, scrub_secrets
from webhook_app.startup import announce, preflight, refuse
from webhook_app.surfaces import admin, cli, web
from webhook_app.wiring import build_services

__all__ = ["create_app", "preflight", "refuse", "Config", "ConfigError"]


def create_app(
    config: Config | None = None, *, clock: Callable[[], float] | None = None, local_clock: Clock = SYSTEM_CLOCK
) -> Flask:
    """Build the app from ``config``, or from the environment when none is given. ``clock``
    says when alerts are received (their age and duplicate windows, on one clock); tests move
    it forward. By default the journal's clock (the database's, with PostgreSQL): never this host's.
    ``local_clock``: this host's elapsed time (send deadlines, heartbeats, rate ledgers in memory,
    bot reads' ages, the investigator's waits); tests pass a ``clock.ManualClock``.

    Nothing runs in the background yet: ``Services.start`` (gunicorn.conf.py's post_worker_init)
    starts it all, so queued alerts left by a previous process are sent at start; delivery alone
    also starts on the first alert.

    Without ``config`` this is a ``flask --app webhook_app`` command (the release phase, ``check``,
    ``alerts``...): a bad setting or an unreachable journal stops it the way it stops gunicorn's
    start (one line per problem, exit status 2), and no dry-run webhook secret is made or
    printed: that is the web process's (wsgi.py passes its config)."""
    if config is None:
        try:
            return _app(_command_config(), clock, local_clock, command=True)
        except ConfigError as exc:
            refuse(exc, "the command did not run")
    return _app(config, clock, local_clock)


def _command_config() -> Config:
    config = Config.from_env(generate_secret=False)
    scrub_secrets(config.secret_values)  # before the journal opens
    if not config.webhook.secret:  # dry run, none made yet; no command needs one: never make it here
        config = config.replace("webhook", source="none")
    return config


def _app(config: Config, clock: Callable[[], float] | None, local_clock: Clock, command: bool = False) -> Flask:
    """``command``: a flask command's app, quiet (warnings only) until its -v asks for the
    start-up lines (``cli.verbose``), which it then says itself."""
    log = configure_logging(config.secret_values, logging.WARNING if command else logging.INFO)
    # A command holds few connections (it runs beside the web instances: journal/postgres/budget.py).
    services = build_services(config, clock, local_clock, COMMAND_CONNECTIONS if command else None)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = config.web.max_body_bytes
    app.json.sort_keys = False
    app.extensions["webhook"] = services
    app.register_blueprint(web.bp)
    admin.install(app)
    cli.register(app)
    warnings = tuple(filter(None, [services.journal.connection_warning()]))
    app.extensions["webhook.announce"] = lambda: announce(
        services.config, log, services.protection.describe(), warnings
    )
    if not command:
        app.extensions.pop("webhook.announce")()
    return app
