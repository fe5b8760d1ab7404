"""Logging to stdout for the PaaS log, with every known secret scrubbed from every line."""
from __future__ import annotations

import logging
import sys
import threading

REDACTED = "[redacted]"


class SecretScrubber(logging.Filter):
    """Replaces known secret values in a record's message and traceback.

    A second line of defence: no code logs secrets on purpose, but a traceback or a
    library's message might carry one."""

    def __init__(self):
        super().__init__()
        self._secrets: set[str] = set()
        self._lock = threading.Lock()

    def add(self, values) -> None:
        with self._lock:
            self._secrets.update(v for v in values if v)

    def scrub(self, text: str) -> str:
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, REDACTED)
        return text

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


def configure_logging(secrets) -> logging.Logger:
    """The app's logger, "webhook_app": INFO to stdout unless logging is already set up."""
    logger = logging.getLogger("webhook_app")
    scrubber.add(secrets)
    if scrubber not in logger.filters:
        logger.addFilter(scrubber)
    logger.setLevel(logging.INFO)
    root = logging.getLogger()
    if not root.handlers and not logger.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
    return logger
