"""Logging to stderr for the PaaS log, with every known secret scrubbed from every line,
ours and gunicorn's alike."""

from __future__ import annotations

import logging
import re
import sys
import threading

from gunicorn.glogging import Logger as _GunicornLogger

REDACTED = "[redacted]"


class SecretScrubber(logging.Filter):
    """Replaces known secret values in a record's message and traceback.

    A second line of defence: no code logs secrets on purpose, but a traceback or a
    library's message might carry one."""

    def __init__(self):
        super().__init__()
        self._secrets: set[str] = set()
        self._pattern: re.Pattern | None = None
        self._lock = threading.Lock()

    def add(self, values) -> None:
        with self._lock:
            self._secrets.update(v for v in values if v)
            # In any case: a secret may come back upper-cased, e.g. inside a variable's name.
            alternatives = "|".join(re.escape(s) for s in sorted(self._secrets, key=len, reverse=True))
            self._pattern = re.compile(alternatives, re.IGNORECASE) if alternatives else None

    def scrub(self, text: str) -> str:
        pattern = self._pattern
        return pattern.sub(REDACTED, text) if pattern is not None else text

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.scrub(record.getMessage())
        record.args = None
        if record.exc_info:
            record.exc_text = self.scrub(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        if record.stack_info:
            record.stack_info = self.scrub(record.stack_info)
        return True


scrubber = SecretScrubber()

# Libraries that log on their own: psycopg's pool logs every failed connection, and the message
# may carry part of the database URL. (A logger's filter sees only the records made on it.)
LIBRARY_LOGGERS = (
    "psycopg",
    "psycopg.pool",
    "psycopg.pq",
    "psycopg.transaction",
    "psycopg.waiting",
    "psycopg.debug",
    "psycopg_pool.sched",
    "psycopg_pool.sched_async",
)


def scrub_secrets(secrets) -> None:
    """Hide these values from every log line: ours, gunicorn's (``GunicornLogger``) and the
    libraries' that log on their own (``LIBRARY_LOGGERS``)."""
    scrubber.add(secrets)
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        if scrubber not in logger.filters:
            logger.addFilter(scrubber)


def configure_logging(secrets, level: int = logging.INFO) -> logging.Logger:
    """The app's logger, "webhook_app": ``level`` (INFO; a flask command's WARNING) to stderr
    unless logging is already set up. (stdout is left to command output, such as the CLI's tables.)"""
    logger = logging.getLogger("webhook_app")
    scrub_secrets(secrets)
    if scrubber not in logger.filters:
        logger.addFilter(scrubber)
    logger.setLevel(level)
    root = logging.getLogger()
    if not root.handlers and not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
    return logger


# gunicorn's access-log atoms read from the request line, the status and the timing alone; the others
# are a header ({name}i, {name}o), an environ variable ({name}e) or the user ("u", Authorization parsed).
_PLAIN_ATOMS = frozenset("hltrsmUqHbBfaTDMLp")
# What those atoms read of the environ.
_PLAIN_ENVIRON = (
    "REMOTE_ADDR",
    "REQUEST_METHOD",
    "RAW_URI",
    "PATH_INFO",
    "QUERY_STRING",
    "SERVER_PROTOCOL",
    "HTTP_REFERER",
    "HTTP_USER_AGENT",
)
_ATOM = re.compile(r"%\(([^)]*)\)")


class _StatusOnly:
    """A response as the plain atoms see it: its status and size, no headers."""

    __slots__ = ("status", "sent")
    headers = ()

    def __init__(self, resp):
        self.status, self.sent = resp.status, getattr(resp, "sent", None)


class GunicornLogger(_GunicornLogger):
    """gunicorn's error and access logs through the same scrubber (gunicorn.conf.py's
    ``logger_class``): a secret in a URL path, or in a request line gunicorn complains
    about, never reaches the log."""

    def setup(self, cfg):
        super().setup(cfg)
        for logger in (self.error_log, self.access_log):
            if scrubber not in logger.filters:
                logger.addFilter(scrubber)
        self._plain_format = set(_ATOM.findall(cfg.access_log_format)) <= _PLAIN_ATOMS

    def atoms(self, resp, req, environ, request_time):
        """gunicorn's atoms; when the format uses only plain ones, without the atom of every
        request header, response header and environ variable (most of the access line's CPU)."""
        if not getattr(self, "_plain_format", False):
            return super().atoms(resp, req, environ, request_time)
        plain_environ = {name: environ[name] for name in _PLAIN_ENVIRON if name in environ}
        return super().atoms(_StatusOnly(resp), (), plain_environ, request_time)
