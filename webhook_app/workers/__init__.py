"""Delivery and the background workers: the dispatcher and its senders (``delivery``), pacing,
retries (``outcomes``), the investigator of unknown outcomes, readiness, the bot watch, membership and
notifications."""
