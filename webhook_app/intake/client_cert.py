"""TradingView's client certificate (TRADINGVIEW_CLIENT_CERT=require): what the peer of a webhook
request presented, and whether it is TradingView's.

Where TLS ends at gunicorn, the handshake asks for a certificate without requiring one
(ssl.CERT_OPTIONAL, so that /healthz and /admin need none) and verifies any presented against
TRADINGVIEW_CA_FILE: a certificate from another CA ends the handshake there. gunicorn's gthread
worker gives the app the connection's socket as ``environ["gunicorn.socket"]``; its
``getpeercert()`` is the verified certificate, or None when none was presented.

Behind a proxy that ends TLS and checks the certificate, the proxy says what it found in two
headers, which are believed only from where a proxy stands (``from_proxy``'s rule)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from webhook_app.config.distinguished_names import parse_dn
from webhook_app.config.sections import TlsSettings
from webhook_app.intake.protection import Forbidden, is_internal

VERIFY_HEADER = "X-SSL-Client-Verify"
SUBJECT_HEADER = "X-SSL-Client-S-DN"
# getpeercert()'s attribute names, as the short names a subject is written with.
_SHORT_NAMES = {
    "countryName": "C",
    "stateOrProvinceName": "ST",
    "localityName": "L",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "commonName": "CN",
}


class ForbiddenClientCert(Forbidden):
    """No certificate, or not TradingView's (403), before the body is read; counted like a wrong secret."""

    def __init__(self, problem: str):
        super().__init__("client_certificate", problem, "forbidden_client_cert")


@dataclasses.dataclass(frozen=True)
class Presented:
    """What a request's peer showed: a verified certificate's ``subject`` ((name, value) pairs), or
    None with ``problem`` saying why there is none to judge."""

    subject: tuple[tuple[str, str], ...] | None
    problem: str = ""


def from_tls_socket(sock) -> Presented:
    """The verified certificate of the connection gunicorn served over TLS (``gunicorn.socket``)."""
    getpeercert = getattr(sock, "getpeercert", None)
    if getpeercert is None:
        return Presented(None, "the connection is not TLS, so it carries no client certificate")
    cert = getpeercert()
    if not cert:  # None: none presented; {}: presented but not verified (never with CERT_OPTIONAL)
        return Presented(None, "no client certificate was presented")
    subject = tuple((_SHORT_NAMES.get(name, name), value) for rdn in cert.get("subject", ()) for name, value in rdn)
    return Presented(subject)


def from_proxy(peer: str | None, headers: Mapping[str, str]) -> Presented:
    """What the trusted proxy in front says it verified. Believed only when the TCP peer is a
    loopback or private-network address (a proxy on this host or network: a client that reaches
    the port from the internet is never believed), and the proxy's verdict is exactly ``SUCCESS``:
    the proxy must *set* both headers on every request, over any a client sent. A client's copy
    that a proxy appended to instead arrives joined to the proxy's ("SUCCESS,NONE"), and a subject
    sent twice names O and CN twice: neither passes."""
    if not is_internal(peer):
        return Presented(None, "the request did not come through the trusted proxy (its peer is not private)")
    verdict = headers.get(VERIFY_HEADER, "")
    if verdict.strip() != "SUCCESS":
        shown = verdict.strip()[:40] or "absent"
        return Presented(None, f"the proxy did not verify a client certificate ({VERIFY_HEADER}: {shown})")
    try:
        subject = tuple(parse_dn(headers.get(SUBJECT_HEADER, "")))
    except ValueError as exc:
        return Presented(None, f"the proxy's {SUBJECT_HEADER} {exc}")
    return Presented(subject)


class ClientCertCheck:
    """TRADINGVIEW_CLIENT_CERT's check of a webhook's peer: ``required`` says whether there is one."""

    def __init__(self, tls: TlsSettings):
        self.tls = tls
        self.required = tls.checks_client_cert

    def presented(self, environ: Mapping, peer: str | None, headers: Mapping[str, str]) -> Presented | None:
        """What the request's peer presented (None when nothing is checked): the TLS socket's
        certificate where TLS ends here (a proxy's headers are then never read: no proxy in front
        could have seen the certificate), else the trusted proxy's word."""
        if not self.required:
            return None
        if self.tls.serves_https:
            return from_tls_socket(environ.get("gunicorn.socket"))
        return from_proxy(peer, headers)

    def check(self, presented: Presented | None) -> None:
        """``ForbiddenClientCert`` unless the peer presented a verified certificate whose subject
        holds each required attribute exactly once, with exactly the required value."""
        if not self.required:
            return
        if presented is None or presented.subject is None:
            raise ForbiddenClientCert(presented.problem if presented else "no client certificate was presented")
        for kind, value in self.tls.subject:
            found = [given for name, given in presented.subject if name.upper() == kind]
            if found != [value]:
                raise ForbiddenClientCert(
                    f"the client certificate is not TradingView's: its subject must have {kind}={value}"
                    " (TRADINGVIEW_CERT_SUBJECT)"
                )
