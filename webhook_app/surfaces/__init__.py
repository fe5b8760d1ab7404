"""HTTP and the operator's surfaces: the webhook route, the operator page and its JSON, the CLI
commands, and the one place where error types become HTTP replies (``web``)."""
