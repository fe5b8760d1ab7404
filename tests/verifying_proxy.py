"""A stand-in for nginx in front of the service: it ends TLS on 127.0.0.1, asks for a client
certificate without requiring one (verifying a presented one against its CA file), and forwards
each request over plain HTTP to the service with X-Forwarded-For appended to and the verification's
result in X-SSL-Client-Verify (SUCCESS or NONE) and X-SSL-Client-S-DN (RFC 4514, as nginx's
``$ssl_client_s_dn``), *set* over whatever the client sent, as ``proxy_set_header`` does; or, with
``appends=True``, added beside the client's, as a misconfigured proxy would."""

from __future__ import annotations

import http.client
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}
_VERIFY, _SUBJECT = "X-SSL-Client-Verify", "X-SSL-Client-S-DN"
_SHORT = {
    "countryName": "C",
    "stateOrProvinceName": "ST",
    "localityName": "L",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "commonName": "CN",
}


def rfc4514(subject) -> str:
    """getpeercert()'s subject as OpenSSL's RFC 2253 form writes it: last attribute first, specials escaped."""
    parts = []
    for rdn in reversed(subject):
        for name, value in rdn:
            escaped = "".join("\\" + c if c in ',+"\\<>;' else c for c in value)
            parts.append(f"{_SHORT.get(name, name)}={escaped}")
    return ",".join(parts)


class VerifyingProxy:
    def __init__(self, upstream_port: int, cert_pair: tuple[str, str], ca_file: str, appends: bool = False):
        self.upstream_port, self.appends = upstream_port, appends
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=ca_file)
        context.load_cert_chain(*cert_pair)
        context.verify_mode = ssl.CERT_OPTIONAL
        self.context = context
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._server.handle_error = self._handle_error

    @staticmethod
    def _handle_error(request, client_address) -> None:
        """A handshake it refused (a certificate from a CA it does not trust) is no error of the proxy's."""
        if not isinstance(sys.exc_info()[1], ssl.SSLError):
            ThreadingHTTPServer.handle_error(None, request, client_address)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> VerifyingProxy:
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                # The handshake in the connection's own thread; a failed one just ends the connection.
                self.request = proxy.context.wrap_socket(self.request, server_side=True)
                super().setup()

            def log_message(self, *args):
                pass

            def do_GET(self):
                self._forward()

            do_POST = do_GET

            def _forward(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                upstream = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=10)
                upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                for name, value in self._headers():
                    upstream.putheader(name, value)
                upstream.endheaders(body)
                answer = upstream.getresponse()
                data = answer.read()
                self.send_response(answer.status)
                for name, value in answer.getheaders():
                    if name.lower() not in _HOP_BY_HOP | {"content-length"}:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                upstream.close()

            def _headers(self) -> list[tuple[str, str]]:
                ours = {_VERIFY.lower(), _SUBJECT.lower(), "x-forwarded-for"}
                kept = [
                    (name, value)
                    for name, value in self.headers.items()
                    if name.lower() not in _HOP_BY_HOP and (proxy.appends or name.lower() not in ours)
                ]
                if proxy.appends:  # the client's X-Forwarded-For stays, ours follows it
                    kept = [(n, v) for n, v in kept if n.lower() != "x-forwarded-for"]
                forwarded = [v for n, v in self.headers.items() if n.lower() == "x-forwarded-for"]
                cert = self.request.getpeercert()
                verdict = [(_VERIFY, "SUCCESS" if cert else "NONE")]
                if cert:  # nginx sends no header whose value is empty
                    verdict.append((_SUBJECT, rfc4514(cert["subject"])))
                return [*kept, ("X-Forwarded-For", ", ".join([*forwarded, self.client_address[0]])), *verdict]

        return Handler
