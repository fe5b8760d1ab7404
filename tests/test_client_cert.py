"""TRADINGVIEW_CLIENT_CERT=require: a webhook is taken only from a peer with TradingView's client
certificate. Through gunicorn serving HTTPS itself (as the Procfile starts it), and behind a proxy
that checks the certificate (a stand-in for nginx); the OKX stand-in says what was sent."""

from __future__ import annotations

import pytest
import requests

from tests.certificates import TRADINGVIEW_SUBJECT, TestCa
from tests.conftest import ADMIN_TOKEN, eventually, live_env, make_alert
from tests.okx_stand_in import OkxStandIn
from tests.service_process import ServiceProcess
from tests.verifying_proxy import VerifyingProxy

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
# Each client certificate a webhook may come with, but TradingView's, one thing changed.
WRONG_SUBJECTS = {
    "other organisation": {**TRADINGVIEW_SUBJECT, "O": "TradingView Impostors, Inc."},
    "other common name": {**TRADINGVIEW_SUBJECT, "CN": "TradingView Webhooks Test"},
    "no organisation": {key: value for key, value in TRADINGVIEW_SUBJECT.items() if key != "O"},
    "organisation with different case": {**TRADINGVIEW_SUBJECT, "O": "tradingview, inc."},
}


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """A test CA standing in for TradingView's issuer, and another that nobody trusts."""
    folder = tmp_path_factory.mktemp("certs")
    ca, untrusted = TestCa(folder / "ca"), TestCa(folder / "untrusted", "Untrusted Root CA")
    issued = {
        "server": ca.server(),
        "tradingview": ca.client("tradingview", TRADINGVIEW_SUBJECT),
        "untrusted CA": untrusted.client("untrusted", TRADINGVIEW_SUBJECT),
        **{label: ca.client(label.replace(" ", "-"), subject) for label, subject in WRONG_SUBJECTS.items()},
    }
    return ca, issued


@pytest.fixture(scope="module")
def okx_module():
    stand_in = OkxStandIn().start()
    yield stand_in
    stand_in.stop()


def _env(okx, folder, **extra) -> dict:
    return live_env(
        okx,
        folder,
        ADMIN_TOKEN=ADMIN_TOKEN,
        TRADINGVIEW_CLIENT_CERT="require",
        LOCKOUT_THRESHOLD="1000",  # the refusals below come from one address; lockout has its own test
        **extra,
    )


@pytest.fixture(scope="module")
def https_service(certs, okx_module, tmp_path_factory):
    """gunicorn serving HTTPS itself, requiring TradingView's certificate from the test CA."""
    ca, issued = certs
    env = _env(
        okx_module,
        tmp_path_factory.mktemp("https"),
        TLS_CERT_FILE=str(issued["server"].cert_file),
        TLS_KEY_FILE=str(issued["server"].key_file),
        TRADINGVIEW_CA_FILE=str(ca.cert_file),
    )
    service = ServiceProcess(env, ca=str(ca.cert_file)).start()
    yield service
    service.discard()


def _journaled(service) -> list[dict]:
    answer = requests.get(service.url + "/alerts", headers=ADMIN, verify=service.verify, timeout=5)
    assert answer.status_code == 200, answer.text
    return answer.json()["alerts"]


def test_tradingview_certificate_with_the_secret_relays(https_service, certs, okx_module):
    _, issued = certs
    sent = len(okx_module.executed)
    answer = requests.post(
        https_service.url + "/webhook",
        json=make_alert(id="with-certificate"),
        cert=issued["tradingview"].pair,
        verify=https_service.verify,
        timeout=5,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "ok" and len(okx_module.executed) == sent + 1


def test_the_secret_is_still_required_with_the_certificate(https_service, certs, okx_module):
    _, issued = certs
    sent, journaled = len(okx_module.executed), len(_journaled(https_service))
    answer = requests.post(
        https_service.url + "/webhook",
        json=make_alert(secret="not-the-secret-at-all-0123"),
        cert=issued["tradingview"].pair,
        verify=https_service.verify,
        timeout=5,
    )
    assert answer.status_code == 401 and answer.json()["status"] == "unauthorized"
    assert len(okx_module.executed) == sent and len(_journaled(https_service)) == journaled


@pytest.mark.parametrize("presented", [None, *WRONG_SUBJECTS])
def test_no_certificate_or_another_subject_is_refused_before_the_body(https_service, certs, okx_module, presented):
    _, issued = certs
    sent, journaled = len(okx_module.executed), len(_journaled(https_service))
    answer = requests.post(
        https_service.url + "/webhook",
        json=make_alert(id=f"refused-{presented}"),
        cert=issued[presented].pair if presented else None,
        verify=https_service.verify,
        timeout=5,
    )
    assert answer.status_code == 403, answer.text
    body = answer.json()
    assert body["status"] == "forbidden_client_cert"
    assert body["errors"][0]["field"] == "client_certificate"
    assert len(okx_module.executed) == sent and len(_journaled(https_service)) == journaled
    assert "alert http=403 status=forbidden_client_cert" in https_service.log()


def test_a_certificate_from_an_untrusted_ca_ends_the_handshake(https_service, certs, okx_module):
    """gunicorn verifies a presented certificate in the handshake (Python's ssl has no way to ask
    for one and leave its verification to the app): another CA's never reaches the app at all."""
    _, issued = certs
    sent, journaled = len(okx_module.executed), len(_journaled(https_service))
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.post(
            https_service.url + "/webhook",
            json=make_alert(id="untrusted"),
            cert=issued["untrusted CA"].pair,
            verify=https_service.verify,
            timeout=5,
        )
    assert len(okx_module.executed) == sent and len(_journaled(https_service)) == journaled
    # gunicorn's log says why, on one line
    eventually(lambda: "certificate verify failed: unable to get local issuer certificate" in https_service.log())


def test_operator_page_health_and_readiness_need_no_client_certificate(https_service):
    for path, headers in (("/admin", ADMIN), ("/healthz", {}), ("/readyz", ADMIN), ("/status", ADMIN)):
        answer = requests.get(https_service.url + path, headers=headers, verify=https_service.verify, timeout=5)
        assert answer.status_code in (200, 503), (path, answer.status_code)  # /readyz: 503 until checked
    readyz = https_service.url + "/readyz"
    eventually(lambda: "checks" in requests.get(readyz, headers=ADMIN, verify=https_service.verify, timeout=5).json())
    page = requests.get(https_service.url + "/admin", headers=ADMIN, verify=https_service.verify, timeout=5)
    assert "required on /webhook, checked at TLS here" in page.text
    assert "client certificates are checked on /webhook at TLS here" in page.text  # readiness's line
    status = requests.get(https_service.url + "/status", headers=ADMIN, verify=https_service.verify, timeout=5)
    assert status.json()["service"]["client_certs"] == "tls"


# -- behind a proxy that checks the certificate ------------------------------------------------


@pytest.fixture
def behind_proxy(certs, okx, tmp_path, service_factory):
    """The service on plain HTTP behind a verifying proxy (TRUSTED_PROXY_HOPS=1); ``build(appends=…)``."""
    ca, issued = certs
    proxies = []

    def build(appends: bool = False, **extra):
        service = service_factory(_env(okx, tmp_path, TRUSTED_PROXY_HOPS="1", **extra))
        proxy = VerifyingProxy(service.port, issued["server"].pair, str(ca.cert_file), appends=appends).start()
        proxies.append(proxy)
        return service, proxy

    yield build
    for proxy in proxies:
        proxy.stop()


def _through(proxy, ca, cert=None, headers=None, **alert):
    return requests.post(
        proxy.url + "/webhook",
        json=make_alert(**alert),
        cert=cert,
        headers=headers or {},
        verify=str(ca.cert_file),
        timeout=5,
    )


FORGED = {"X-SSL-Client-Verify": "SUCCESS", "X-SSL-Client-S-DN": "CN=TradingView Webhooks,O=TradingView\\, Inc."}


def test_the_proxys_word_is_honoured_and_a_clients_own_headers_are_not(behind_proxy, certs, okx):
    ca, issued = certs
    service, proxy = behind_proxy()
    relayed = _through(proxy, ca, cert=issued["tradingview"].pair, id="through-proxy")
    assert relayed.status_code == 200, relayed.text
    assert len(okx.executed) == 1
    # A client without a certificate writing the proxy's headers itself: the proxy sets its own.
    forged = _through(proxy, ca, headers=FORGED, id="forged")
    assert forged.status_code == 403 and forged.json()["status"] == "forbidden_client_cert"
    wrong = _through(proxy, ca, cert=issued["other organisation"].pair, headers=FORGED, id="wrong-subject")
    assert wrong.status_code == 403 and wrong.json()["status"] == "forbidden_client_cert"
    assert len(okx.executed) == 1


def test_a_proxy_that_appends_instead_of_setting_lets_no_forged_header_through(behind_proxy, certs, okx):
    """Added beside the client's, the proxy's headers arrive joined to the forged ones: refused."""
    ca, issued = certs
    service, proxy = behind_proxy(appends=True)
    for cert in (None, issued["other organisation"].pair):
        answer = _through(proxy, ca, cert=cert, headers=FORGED, id=f"appended-{bool(cert)}")
        assert answer.status_code == 403 and answer.json()["status"] == "forbidden_client_cert", answer.text
    assert okx.executed == []


def test_a_test_subject_is_required_when_configured(behind_proxy, certs, okx, tmp_path):
    ca, issued = certs
    service, proxy = behind_proxy(TRADINGVIEW_CERT_SUBJECT="O=Test Org,CN=Test Hooks")
    test_hooks = TestCa(tmp_path / "ca-2").client("hooks", {"O": "Test Org", "CN": "Test Hooks"})
    refused = _through(proxy, ca, cert=issued["tradingview"].pair, id="tradingview-subject")
    assert refused.status_code == 403
    assert "O=Test Org" in refused.json()["message"]
    # The proxy checks the chain: a certificate from a CA it does not trust never gets through it.
    with pytest.raises(requests.exceptions.ConnectionError):
        _through(proxy, ca, cert=test_hooks.pair, id="other-ca")
    assert okx.executed == []


# -- the proxy's word, and the lockout, in the app ---------------------------------------------

PROXY = "10.0.0.5"  # the proxy in front, on the private network
TRADINGVIEW_DN = "CN=TradingView Webhooks,O=TradingView\\, Inc.,L=Westerville,ST=Ohio,C=US"


def _as_proxy(client, verdict="SUCCESS", dn=TRADINGVIEW_DN, peer=PROXY, client_address="203.0.113.7", **alert):
    headers = {"X-Forwarded-For": client_address}
    if verdict is not None:
        headers["X-SSL-Client-Verify"] = verdict
    if dn is not None:
        headers["X-SSL-Client-S-DN"] = dn
    return client.post("/webhook", json=make_alert(**alert), headers=headers, environ_base={"REMOTE_ADDR": peer})


@pytest.fixture
def proxied(make_app):
    return make_app(client_cert="require", trusted_proxy_hops=1).test_client()


def test_a_verified_tradingview_subject_from_the_proxy_relays(proxied, okx):
    answer = _as_proxy(proxied)
    assert answer.status_code == 200, answer.json
    assert len(okx.executed) == 1
    assert proxied.get("/status", headers=ADMIN).json["service"]["client_certs"] == "proxy"


PROXY_REFUSALS = {
    "no verdict": {"verdict": None},
    "verification failed": {"verdict": "FAILED:certificate has expired"},
    "no certificate": {"verdict": "NONE", "dn": None},
    "lower-case verdict": {"verdict": "success"},
    "a client's verdict beside the proxy's": {"verdict": "SUCCESS,NONE"},
    "two verdicts of success": {"verdict": "SUCCESS, SUCCESS"},
    "no subject": {"dn": None},
    "another organisation": {"dn": "CN=TradingView Webhooks,O=TradingView Fans"},
    "a client's subject beside the proxy's": {"dn": f"{TRADINGVIEW_DN},CN=Someone,O=Else"},
    "organisation as part of a unit": {"dn": "CN=TradingView Webhooks,OU=TradingView\\, Inc."},
    "not a subject": {"dn": "TradingView Webhooks"},
    "from a public address, not the proxy": {"peer": "198.51.100.20"},
}


@pytest.mark.parametrize("change", PROXY_REFUSALS.values(), ids=PROXY_REFUSALS.keys())
def test_the_proxys_word_is_believed_only_as_it_must_be_said(proxied, okx, change):
    answer = _as_proxy(proxied, **change)
    assert answer.status_code == 403, answer.json
    assert answer.json["status"] == "forbidden_client_cert"
    assert okx.executed == []


def test_where_tls_ends_here_a_proxys_headers_are_never_read(make_app, okx):
    """No proxy in front could have seen the certificate: only the connection's own counts."""
    client = make_app(client_cert="require", tls_cert_file="/unused/cert.pem", trusted_proxy_hops=1).test_client()
    answer = _as_proxy(client)
    assert answer.status_code == 403 and "not TLS" in answer.json["message"]
    assert okx.executed == []


def test_a_wrong_certificate_is_refused_before_the_body_and_counts_toward_the_lockout(make_app, okx):
    client = make_app(client_cert="require", trusted_proxy_hops=1, lockout_threshold=2).test_client()
    not_json = client.post(
        "/webhook",
        data=b"{not json",
        headers={"X-Forwarded-For": "203.0.113.7", "X-SSL-Client-Verify": "NONE"},
        environ_base={"REMOTE_ADDR": PROXY},
    )
    assert not_json.status_code == 403  # not 400: the body was never read
    assert _as_proxy(client, verdict="NONE").status_code == 403  # the second: locked out
    locked = _as_proxy(client)  # even with TradingView's certificate and the secret
    assert locked.status_code == 429 and locked.json["status"] == "locked_out"
    assert _as_proxy(client, client_address="203.0.113.8").status_code == 200  # another address is not
    assert len(okx.executed) == 1


def test_a_test_subject_replaces_tradingviews(make_app, okx):
    client = make_app(
        client_cert="require", trusted_proxy_hops=1, cert_subject=(("O", "Test Org"), ("CN", "Test Hooks"))
    ).test_client()
    assert _as_proxy(client).status_code == 403
    assert _as_proxy(client, dn="CN=Test Hooks,O=Test Org,C=DE").status_code == 200
