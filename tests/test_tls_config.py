"""TLS and client-certificate settings: each bad one stops the start naming its variable, in
``Config.from_env``, before gunicorn binds, and in the flask commands; a key's content never appears."""

from __future__ import annotations

import socket

import pytest

from tests.certificates import TRADINGVIEW_SUBJECT, TestCa, private_pem
from tests.service_process import ServiceProcess
from tests.test_commands import flask
from webhook_app.config import Config, ConfigError

SECRET = {"WEBHOOK_SECRET": "w" * 24}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Certificates and keys, good and bad, by name: paths as strings."""
    from cryptography.hazmat.primitives.asymmetric import ec

    folder = tmp_path_factory.mktemp("tls")
    ca = TestCa(folder / "ca")
    server, other = ca.server(), ca.server("other-server")
    encrypted = folder / "encrypted.key"
    encrypted.write_bytes(private_pem(ec.generate_private_key(ec.SECP256R1()), password=b"a passphrase"))
    (folder / "garbage.pem").write_text("not a PEM file\n")
    (folder / "a-folder").mkdir()
    unreadable = folder / "a-socket"  # open() fails even for root (ENXIO): a file this process cannot read
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(unreadable))
    paths = {
        "ca": ca.cert_file,
        "cert": server.cert_file,
        "key": server.key_file,
        "other key": other.key_file,
        "encrypted key": encrypted,
        "garbage": folder / "garbage.pem",
        "folder": folder / "a-folder",
        "missing": folder / "missing.pem",
        "unreadable": unreadable,
        "tradingview": ca.client("tradingview", TRADINGVIEW_SUBJECT).cert_file,
    }
    yield {name: str(path) for name, path in paths.items()}
    listener.close()


def env(tmp_path, files, **named):
    """An environment with SECRET; a value in ``files`` (by its name there) stands for its path."""
    values = {variable: files.get(value, value) for variable, value in named.items()}
    return {"DATABASE_URL": f"sqlite:///{tmp_path}/alerts.db", **SECRET, **values}


BAD = {
    "cert without key": ({"TLS_CERT_FILE": "cert"}, ["TLS_KEY_FILE"]),
    "key without cert": ({"TLS_KEY_FILE": "key"}, ["TLS_CERT_FILE"]),
    "cert missing": ({"TLS_CERT_FILE": "missing", "TLS_KEY_FILE": "key"}, ["TLS_CERT_FILE"]),
    "key missing": ({"TLS_CERT_FILE": "cert", "TLS_KEY_FILE": "missing"}, ["TLS_KEY_FILE"]),
    "cert is a folder": ({"TLS_CERT_FILE": "folder", "TLS_KEY_FILE": "key"}, ["TLS_CERT_FILE"]),
    "both unreadable": (
        {"TLS_CERT_FILE": "unreadable", "TLS_KEY_FILE": "unreadable"},
        ["TLS_CERT_FILE", "TLS_KEY_FILE"],
    ),
    "cert not PEM": ({"TLS_CERT_FILE": "garbage", "TLS_KEY_FILE": "key"}, ["TLS_CERT_FILE"]),
    "key not PEM": ({"TLS_CERT_FILE": "cert", "TLS_KEY_FILE": "garbage"}, ["TLS_KEY_FILE"]),
    "key of another cert": (
        {"TLS_CERT_FILE": "cert", "TLS_KEY_FILE": "other key"},
        ["TLS_KEY_FILE"],
    ),  # not this certificate's key
    "key encrypted": ({"TLS_CERT_FILE": "cert", "TLS_KEY_FILE": "encrypted key"}, ["TLS_KEY_FILE"]),
    "key given as cert": (
        {"TLS_CERT_FILE": "key", "TLS_KEY_FILE": "key"},
        ["TLS_CERT_FILE"],
    ),  # the key given as the certificate
    "mode yes": ({"TRADINGVIEW_CLIENT_CERT": "yes"}, ["TRADINGVIEW_CLIENT_CERT"]),
    "mode optional": ({"TRADINGVIEW_CLIENT_CERT": "optional", "TRUSTED_PROXY_HOPS": "1"}, ["TRADINGVIEW_CLIENT_CERT"]),
    "require without TLS or proxy": (
        {"TRADINGVIEW_CLIENT_CERT": "require"},
        ["TRADINGVIEW_CLIENT_CERT"],
    ),  # neither TLS here nor a proxy
    "require on Heroku": (
        {"TRADINGVIEW_CLIENT_CERT": "require", "DYNO": "web.1"},
        ["TRADINGVIEW_CLIENT_CERT"],
    ),  # Heroku's router
    "require with bad hops": (
        {"TRADINGVIEW_CLIENT_CERT": "require", "TRUSTED_PROXY_HOPS": "x"},
        ["TRUSTED_PROXY_HOPS"],
    ),
    "CA file missing": ({"TRADINGVIEW_CA_FILE": "missing"}, ["TRADINGVIEW_CA_FILE"]),
    "CA file not PEM": ({"TRADINGVIEW_CA_FILE": "garbage"}, ["TRADINGVIEW_CA_FILE"]),
    "CA file holds a key": ({"TRADINGVIEW_CA_FILE": "encrypted key"}, ["TRADINGVIEW_CA_FILE"]),
    "subject without O": (
        {"TRADINGVIEW_CERT_SUBJECT": "CN=Test Hooks"},
        ["TRADINGVIEW_CERT_SUBJECT"],
    ),  # no organisation
    "subject without CN": ({"TRADINGVIEW_CERT_SUBJECT": "O=Test Org"}, ["TRADINGVIEW_CERT_SUBJECT"]),
    "subject with O twice": ({"TRADINGVIEW_CERT_SUBJECT": "O=A,O=B,CN=Test Hooks"}, ["TRADINGVIEW_CERT_SUBJECT"]),
    "subject with another attribute": (
        {"TRADINGVIEW_CERT_SUBJECT": "O=Test Org,CN=Test Hooks,serialNumber=1"},
        ["TRADINGVIEW_CERT_SUBJECT"],
    ),
    "subject with empty O": ({"TRADINGVIEW_CERT_SUBJECT": "O=,CN=Test Hooks"}, ["TRADINGVIEW_CERT_SUBJECT"]),
    "subject not NAME=value": ({"TRADINGVIEW_CERT_SUBJECT": "TradingView Webhooks"}, ["TRADINGVIEW_CERT_SUBJECT"]),
    "subject ending in a backslash": (
        {"TRADINGVIEW_CERT_SUBJECT": "O=Test Org,CN=Test\\"},
        ["TRADINGVIEW_CERT_SUBJECT"],
    ),
}


@pytest.mark.parametrize("values, variables", BAD.values(), ids=BAD.keys())
def test_bad_setting_stops_the_start_naming_each_variable(tmp_path, files, values, variables):
    with pytest.raises(ConfigError) as failure:
        Config.from_env(env(tmp_path, files, **values))
    assert failure.value.variables == variables
    assert len(str(failure.value).splitlines()) == len(variables)
    _shows_no_key(str(failure.value), files)


def _shows_no_key(text: str, files: dict) -> None:
    assert "PRIVATE KEY" not in text
    for name in ("key", "other key", "encrypted key"):
        with open(files[name]) as handle:
            body = [line for line in handle.read().splitlines() if not line.startswith("-----")]
        assert not any(line[:16] in text for line in body), name


@pytest.mark.parametrize(
    "values, serves_https, required, subject",
    [
        ({}, False, False, (("O", "TradingView, Inc."), ("CN", "TradingView Webhooks"))),
        ({"TLS_CERT_FILE": "cert", "TLS_KEY_FILE": "key"}, True, False, None),
        ({"TLS_CERT_FILE": "cert", "TLS_KEY_FILE": "key", "TRADINGVIEW_CLIENT_CERT": "require"}, True, True, None),
        ({"TRADINGVIEW_CLIENT_CERT": "REQUIRE", "TRUSTED_PROXY_HOPS": "1"}, False, True, None),
        ({"TRADINGVIEW_CLIENT_CERT": "off", "DYNO": "web.1"}, False, False, None),
        (
            {"TRADINGVIEW_CERT_SUBJECT": "O=Test Org,CN=Test Hooks"},
            False,
            False,
            (("O", "Test Org"), ("CN", "Test Hooks")),
        ),
        ({"TRADINGVIEW_CERT_SUBJECT": "cn=Hooks, o=TradingView\\, Inc., C=US"}, False, False, None),
        ({"TRADINGVIEW_CERT_SUBJECT": "O=TradingView, Inc.,CN=TradingView Webhooks"}, False, False, None),
    ],
)
def test_good_settings_are_read(tmp_path, files, values, serves_https, required, subject):
    tls = Config.from_env(env(tmp_path, files, **values)).tls
    assert (tls.serves_https, tls.checks_client_cert) == (serves_https, required)
    if subject is not None:
        assert tls.subject == subject
    assert tls.ca_file.endswith(".pem")  # certifi's bundle by default


def test_a_subject_is_read_with_its_escapes_and_a_comma_inside_a_value(tmp_path, files):
    read = Config.from_env(env(tmp_path, files, TRADINGVIEW_CERT_SUBJECT="cn=Hooks, o=TradingView\\, Inc., C=US")).tls
    assert read.subject == (("CN", "Hooks"), ("O", "TradingView, Inc."), ("C", "US"))
    unescaped = Config.from_env(env(tmp_path, files, TRADINGVIEW_CERT_SUBJECT="O=TradingView, Inc.,CN=X")).tls
    assert unescaped.subject == (("O", "TradingView, Inc."), ("CN", "X"))


def test_gunicorn_does_not_start_with_a_key_that_is_not_the_certificates(tmp_path, files):
    service = ServiceProcess(env(tmp_path, files, TLS_CERT_FILE="cert", TLS_KEY_FILE="other key"))
    with pytest.raises(AssertionError) as failure:
        try:
            service.start(timeout=15)
        finally:
            service.discard()
    text = str(failure.value)
    assert "service exited with 2" in text and "Traceback" not in text
    assert f"configuration error: TLS_KEY_FILE: {files['other key']} is not the key of the certificate" in text
    _shows_no_key(text, files)


@pytest.mark.parametrize("command", [["check"], ["db", "upgrade"]], ids=["check", "db upgrade"])
def test_flask_commands_stop_on_a_bad_tls_setting(tmp_path, files, command):
    result = flask(command, env(tmp_path, files, TLS_CERT_FILE="cert", TLS_KEY_FILE="encrypted key"))
    assert result.returncode == 2 and "Traceback" not in result.output, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("configuration error: ")]
    assert errors == [
        f"configuration error: TLS_KEY_FILE: {files['encrypted key']} is encrypted: give the key "
        "without a passphrase, readable only by the service"
    ], result.output
    _shows_no_key(result.output, files)


def test_check_says_whether_client_certificates_are_checked(tmp_path, files):
    off = flask(["check"], env(tmp_path, files))
    assert "PASS client_certificates: client certificates are not checked (TRADINGVIEW_CLIENT_CERT=off)" in off.output
    required = flask(
        ["check"],
        env(tmp_path, files, TRADINGVIEW_CLIENT_CERT="require", TRUSTED_PROXY_HOPS="1"),
    )
    assert "PASS client_certificates: client certificates are checked on /webhook by the trusted proxy" in (
        required.output
    ), required.output
