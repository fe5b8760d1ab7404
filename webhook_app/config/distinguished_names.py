"""Reading a distinguished name written as RFC 4514 says (``CN=TradingView Webhooks,O=TradingView\\,
Inc.,C=US``), as TRADINGVIEW_CERT_SUBJECT is given and as a proxy writes the subject it verified
(nginx's ``$ssl_client_s_dn``, Caddy's ``{tls_client_subject}``)."""

from __future__ import annotations

import re

# An attribute's name and its "=": a short name (CN, O, emailAddress) or an OID (2.5.4.3).
_NAME = re.compile(r"\s*([A-Za-z][A-Za-z0-9-]*|[0-9]+(?:\.[0-9]+)+)\s*=")
_HEX_PAIR = re.compile(r"[0-9A-Fa-f]{2}")
_SEPARATORS = ",+;"


def parse_dn(text: str) -> list[tuple[str, str]]:
    """Each (name, value) in the order written, multi-valued parts (``+``) flattened. Escapes are
    undone: ``\\,`` and the like, and ``\\XX`` bytes (UTF-8). A separator counts only where the next
    attribute's ``NAME=`` follows it, so an unescaped comma inside a value stays in the value.
    ``ValueError`` says what is wrong, never repeating the text."""
    if not text.strip():
        raise ValueError("is empty")
    pairs, at = [], 0
    while at < len(text):
        name = _NAME.match(text, at)
        if name is None:
            raise ValueError(f"is not NAME=value at character {at + 1}")
        value, at = _value(text, name.end())
        pairs.append((name.group(1), value))
        at += 1  # past the separator (or the end)
    return pairs


def _value(text: str, at: int) -> tuple[str, int]:
    """The value starting at ``at``, unescaped, and where it ends (its separator, or the end).
    Unescaped spaces around it are not part of it; escaped ones are."""
    pieces: list[tuple[bytes, bool]] = []  # (bytes, escaped)
    while at < len(text):
        char = text[at]
        if char == "\\":
            pair = _HEX_PAIR.match(text, at + 1)
            if pair:
                pieces.append((bytes.fromhex(pair.group()), True))
                at = pair.end()
                continue
            if at + 1 == len(text):
                raise ValueError("ends with a lone backslash")
            pieces.append((text[at + 1].encode(), True))
            at += 2
            continue
        if char in _SEPARATORS and _NAME.match(text, at + 1):
            break
        pieces.append((char.encode(), False))
        at += 1
    while pieces and not pieces[0][1] and pieces[0][0].isspace():
        pieces.pop(0)
    while pieces and not pieces[-1][1] and pieces[-1][0].isspace():
        pieces.pop()
    return b"".join(piece for piece, _ in pieces).decode("utf-8", "replace"), at
