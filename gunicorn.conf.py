"""gunicorn settings for the web process (Procfile). Read by gunicorn at start."""

import ssl
import sys

from webhook_app import preflight
from webhook_app.journal import JournalInUse

# The whole configuration is checked here, before gunicorn binds: a bad setting stops the
# start with one line per problem and exit status 2, not a worker traceback.
_checked = preflight()
bind = f"0.0.0.0:{_checked.web.port}"

# HTTPS served here (TLS_CERT_FILE, TLS_KEY_FILE: checked by preflight, key matching certificate).
# With TRADINGVIEW_CLIENT_CERT=require the handshake asks for a client certificate without
# requiring one (CERT_OPTIONAL: /healthz, /readyz, /admin need none) and verifies a presented one
# against TRADINGVIEW_CA_FILE; the app judges, per request to /webhook, the certificate the
# connection carries (webhook_app/intake/client_cert.py).
if _checked.tls.serves_https:
    certfile, keyfile = _checked.tls.cert_file, _checked.tls.key_file
    if _checked.tls.checks_client_cert:
        cert_reqs = ssl.CERT_OPTIONAL
        ca_certs = _checked.tls.ca_file

# One process: OKX's 20-requests-per-2-seconds limit is enforced by a limiter inside it,
# and the journal's restart recovery assumes no other sender (README: scaling).
# Threads, because the work is waiting on OKX: a request holds its thread for up to the
# reply deadline (2.5 s), so 64 threads answer 64 alerts at once.
workers = 1
worker_class = "gthread"
threads = 64

# A worker silent for this long is restarted; well above the 2.5 s reply deadline.
timeout = 30
# On SIGTERM: stop accepting, finish requests (2.5 s at most), then stop every worker
# (worker_exit below, STOP_SECONDS). Under the 30 s a PaaS waits before SIGKILL.
graceful_timeout = 20
STOP_SECONDS = 15
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


def _services(worker):
    """The app's ``Services`` (None for an app that is not this service's, e.g. bench's bare one)."""
    return getattr(getattr(worker, "wsgi", None), "extensions", {}).get("webhook")


def post_worker_init(worker):
    """Start every background worker once the app is loaded: queued alerts are sent now."""
    services = _services(worker)
    if services is None:
        return
    try:
        services.start()
    except JournalInUse as exc:
        # A second sender on one SQLite file: refuse to start rather than pace to a second rate limit.
        print(f"configuration error: DATABASE_URL: {exc}", file=sys.stderr, flush=True)
        sys.exit(3)  # gunicorn's "worker failed to boot": the master stops too


def worker_exit(server, worker):
    """Leave queued alerts in the journal, let in-flight sends finish and stop every worker (bounded)."""
    services = _services(worker)
    if services is not None:
        services.stop(timeout=STOP_SECONDS)
