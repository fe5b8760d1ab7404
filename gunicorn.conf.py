"""gunicorn settings for the web process (Procfile). Read by gunicorn at start."""

from webhook_app import preflight

# The whole configuration is checked here, before gunicorn binds: a bad setting stops the
# start with one line per problem and exit status 2, not a worker traceback.
_checked = preflight()
bind = f"0.0.0.0:{_checked.port}"

# One process: OKX's 20-requests-per-2-seconds limit is enforced by a limiter inside it,
# and the journal's restart recovery assumes no other sender (README: scaling).
# Threads, because the work is waiting on OKX: a request holds its thread for up to the
# reply deadline (2.5 s), so 64 threads answer 64 alerts at once.
workers = 1
worker_class = "gthread"
threads = 64

# A worker silent for this long is restarted; well above the 2.5 s reply deadline.
timeout = 30
# On SIGTERM: stop accepting, finish requests, then stop delivery (worker_exit below).
# Under the 30 s a PaaS waits before SIGKILL, leaving room for the delivery to stop.
graceful_timeout = 20
keepalive = 5

# Limits on what a client may send before the app sees it.
limit_request_line = 8190  # gunicorn's largest; a longer line is refused 414 (documented in openapi.json)
limit_request_fields = 50

# Access log to stdout, path only (%(U)s): never the query string, never the body.
accesslog = "-"
# Both of gunicorn's logs go through the app's secret scrubber.
logger_class = "webhook_app.logs.GunicornLogger"
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(B)sB %(M)sms'
errorlog = "-"

# gunicorn 25+ opens a control socket under $HOME; nothing here uses it.
control_socket_disable = True


def worker_exit(server, worker):
    """Leave queued alerts in the journal and let in-flight sends finish (bounded)."""
    app = getattr(worker, "wsgi", None)
    services = getattr(app, "extensions", {}).get("webhook") if app is not None else None
    if services is not None:
        services.delivery.stop(timeout=8)
        services.refusals.stop()
