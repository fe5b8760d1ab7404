"""Reading the TLS settings: HTTPS served by gunicorn itself (TLS_CERT_FILE, TLS_KEY_FILE) and the
check of TradingView's client certificate (TRADINGVIEW_CLIENT_CERT, TRADINGVIEW_CA_FILE,
TRADINGVIEW_CERT_SUBJECT), with the files each names opened and checked here, so that a bad one
stops the start naming its variable. No message ever holds a file's content (a key's least of all):
only its path and what is wrong with it."""

from __future__ import annotations

import ssl

import certifi

from webhook_app.config.distinguished_names import parse_dn
from webhook_app.config.reader import Reader
from webhook_app.config.sections import TRADINGVIEW_SUBJECT, TlsSettings, WebSettings
from webhook_app.config.values import Invalid

CLIENT_CERT_MODES = ("off", "require")
# The subject attributes TRADINGVIEW_CERT_SUBJECT may name; O and CN it must.
SUBJECT_ATTRIBUTES = ("C", "ST", "L", "O", "OU", "CN")


class _Encrypted(Exception):
    """The key asked for a passphrase (raised by the password callback, instead of a prompt)."""


def read_tls(reader: Reader, web: WebSettings) -> TlsSettings:
    """The TLS section; every problem named on ``reader``."""
    cert_file, key_file = reader.text("TLS_CERT_FILE"), reader.text("TLS_KEY_FILE")
    if bool(cert_file) != bool(key_file):
        given, missing = ("TLS_CERT_FILE", "TLS_KEY_FILE") if cert_file else ("TLS_KEY_FILE", "TLS_CERT_FILE")
        reader.bad(missing, f"is required with {given}: HTTPS needs the certificate and its key")
    elif cert_file:
        _check_pair(reader, cert_file, key_file)
    mode = reader.parsed("TRADINGVIEW_CLIENT_CERT", _mode, "off")
    ca_file = reader.text("TRADINGVIEW_CA_FILE")
    if ca_file:
        _check_ca_file(reader, ca_file)
    subject = reader.parsed("TRADINGVIEW_CERT_SUBJECT", cert_subject, TRADINGVIEW_SUBJECT)
    tls = TlsSettings(cert_file, key_file, mode or "off", ca_file or certifi.where(), subject or TRADINGVIEW_SUBJECT)
    if mode == "require":
        _check_where_checked(reader, tls, web)
    return tls


def _mode(raw: str) -> str:
    if raw.lower() not in CLIENT_CERT_MODES:
        raise Invalid(f"must be one of {', '.join(CLIENT_CERT_MODES)}")
    return raw.lower()


def _check_where_checked(reader: Reader, tls: TlsSettings, web: WebSettings) -> None:
    """``require`` needs a place where the certificate is seen: TLS ending here, or a proxy that
    checks it and says so; not a PaaS router, which checks nothing and passes a client's headers on."""
    if tls.serves_https:
        return
    hops = web.trusted_proxy_hops
    if not hops:  # None (a bad TRUSTED_PROXY_HOPS, named already) or 0
        if hops == 0:
            reader.bad(
                "TRADINGVIEW_CLIENT_CERT",
                "require needs TLS to end here (set TLS_CERT_FILE and TLS_KEY_FILE) or a proxy in front "
                "that checks the certificate (set TRUSTED_PROXY_HOPS; see docs/client-certificate.md)",
            )
    elif web.platform:
        reader.bad(
            "TRADINGVIEW_CLIENT_CERT",
            f"require cannot work on {web.platform}: its router ends TLS without asking for a client "
            "certificate and passes a client's own X-SSL-Client-* headers on; set it to off",
        )


def _readable(reader: Reader, variable: str, path: str) -> bool:
    """The file can be opened and read by this process; else its problem named, never its content."""
    try:
        with open(path, "rb") as handle:
            handle.read(1)
    except FileNotFoundError:
        reader.bad(variable, f"{path} does not exist")
    except IsADirectoryError:
        reader.bad(variable, f"{path} is a folder, not a PEM file")
    except OSError as exc:
        reader.bad(variable, f"{path} cannot be read by this process ({exc.strerror or 'unreadable'})")
    else:
        return True
    return False


def _check_pair(reader: Reader, cert_file: str, key_file: str) -> None:
    """The certificate parses, the key parses unencrypted, and they belong together (as gunicorn
    will load them for every connection)."""
    readable = [_readable(reader, "TLS_CERT_FILE", cert_file), _readable(reader, "TLS_KEY_FILE", key_file)]
    if not all(readable):  # both looked at, so that both are named
        return
    if not _holds_certificates(cert_file):
        reader.bad("TLS_CERT_FILE", f"{cert_file} holds no PEM certificate")
        return
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert_file, key_file, password=_no_passphrase)
    except _Encrypted:
        reader.bad(
            "TLS_KEY_FILE", f"{key_file} is encrypted: give the key without a passphrase, readable only by the service"
        )
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            reader.bad("TLS_KEY_FILE", f"{key_file} is not the key of the certificate in TLS_CERT_FILE")
        else:  # never OpenSSL's text: ours names the file, and nothing of what is in it
            reader.bad("TLS_KEY_FILE", f"{key_file} holds no PEM private key")


def _no_passphrase():
    raise _Encrypted()


def _holds_certificates(path: str) -> bool:
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_verify_locations(cafile=path)
    except ssl.SSLError:
        return False
    return True


def _check_ca_file(reader: Reader, ca_file: str) -> None:
    if _readable(reader, "TRADINGVIEW_CA_FILE", ca_file) and not _holds_certificates(ca_file):
        reader.bad("TRADINGVIEW_CA_FILE", f"{ca_file} holds no PEM certificate")


def cert_subject(raw: str) -> tuple[tuple[str, str], ...]:
    """``O=Test Org,CN=Test Hooks``: the attributes a client certificate's subject must have, each
    exactly once with exactly this value. RFC 4514's escapes are read (``O=TradingView\\, Inc.``),
    and a comma not followed by ``NAME=`` is part of the value (``O=TradingView, Inc.,CN=…``)."""
    try:
        pairs = parse_dn(raw)
    except ValueError as exc:
        raise Invalid(f"{exc}; write it as O=Test Org,CN=Test Hooks") from None
    kinds = [kind.upper() for kind, _ in pairs]
    problems = [
        f"{kind} is not one of {', '.join(SUBJECT_ATTRIBUTES)}" for kind in kinds if kind not in SUBJECT_ATTRIBUTES
    ]
    problems += [f"names {kind} twice" for kind in SUBJECT_ATTRIBUTES if kinds.count(kind) > 1]
    problems += [f"must name {kind}" for kind in ("O", "CN") if kind not in kinds]
    problems += [f"{kind} is empty" for kind, value in pairs if not value]
    if problems:
        raise Invalid(*problems)
    return tuple((kind.upper(), value) for kind, value in pairs)
