"""Realm URLs: one canonical form, the WHATWG URL serialisation (sans-I/O).

A realm is the URL prefix a token is for. Its canonical form is what the browser's URL parser
makes of it (``new URL(text).href``): the form the browser gives every request URL, so a prefix
test on canonical strings is the whole matching rule — in Python, the loader and the worker
alike. In the page the adapter canonicalises with the browser's own parser and hands the result
to :func:`check_realm`; under CPython :func:`canonical_realm` applies the same rules for the
cases of ``tests/realm_cases.json`` and rejects, with a one-line error naming the input,
anything it cannot canonicalise with certainty (a non-ASCII host, a shortened IPv4 address, a
stray ``%``...), never producing a form the browser would not.

A usable realm is an absolute http(s) URL without credentials, query or fragment, whose path
ends with ``/``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable

SCHEMES = {"http": 80, "https": 443}
Canonicaliser = Callable[[str], str]


class InvalidRealm(ValueError):
    """A realm URL that cannot be used as a token scope."""


def rejected(text: object, why: str) -> InvalidRealm:
    """The one-line error for the realm URL ``text`` (shortened when long)."""
    long = isinstance(text, str) and len(text) > 120
    shown = repr(text[:117] + "...") if isinstance(text, str) and long else repr(text)
    return InvalidRealm(f"realm URL {shown} {why}")


def check_realm(href: str, given: object = None) -> str:
    """``href`` (already serialised by a WHATWG URL parser) if it is a usable realm; else
    :class:`InvalidRealm` naming ``given`` (the host's input; default ``href``)."""
    given = href if given is None else given
    scheme, sep, rest = href.partition("://")
    if not sep or scheme not in SCHEMES:
        raise rejected(given, "must be an absolute http(s) URL")
    authority = rest.split("/", 1)[0]
    if "@" in authority:
        raise rejected(given, "must not carry credentials (user:password@)")
    if authority.rsplit(":", 1)[0] in ("", "[]"):
        raise rejected(given, "has no host")
    if "?" in rest or "#" in rest:
        raise rejected(given, "must not have a query or fragment")
    if not rest.endswith("/"):
        raise rejected(given, "must end with '/' (a realm is a path prefix)")
    return href


# -- the CPython implementation of the browser's rules, for the shared cases -------------------
_STRIP = "".join(chr(c) for c in range(0x21))  # C0 controls and space, stripped at both ends
_REMOVED = re.compile(r"[\t\n\r]")  # removed anywhere, as the URL parser does
_HOST_OK = re.compile(r"[a-z0-9.\-_]+")  # ASCII hosts kept as they are (lower-cased)
_DIGITS = re.compile(r"(0x[0-9a-f]*|[0-9]+)")
_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
# The path percent-encode set (WHATWG URL): controls, space, " # < > ? ` { } and non-ASCII.
_PATH_ENCODE = set(range(0x21)) | {0x22, 0x23, 0x3C, 0x3E, 0x3F, 0x60, 0x7B, 0x7D, 0x7F}
_UNSURE_IN_PATH = set("^|[]\\")  # browsers differ or the spec changed: refuse rather than guess
_SINGLE_DOT = {".", "%2e"}
_DOUBLE_DOT = {"..", ".%2e", "%2e.", "%2e%2e"}


def _host(text: str, given: str) -> str:
    if text.startswith("["):
        if not text.endswith("]"):
            raise rejected(given, "has a malformed IPv6 host")
        inner = text[1:-1]
        try:
            address = ipaddress.IPv6Address(inner)
        except ValueError:
            raise rejected(given, "has a malformed IPv6 host") from None
        if "%" in inner or "." in inner or address.ipv4_mapped is not None:
            raise rejected(given, "has an IPv6 host in a form browsers serialise differently")
        return f"[{address.compressed}]"
    if not text.isascii():
        raise rejected(given, "has a non-ASCII host: pass its punycode form (xn--...)")
    host = text.lower()
    if not host or not _HOST_OK.fullmatch(host):
        raise rejected(given, "has a host with characters a URL host cannot hold")
    labels = host[:-1].split(".") if host.endswith(".") else host.split(".")
    if labels and _DIGITS.fullmatch(labels[-1]):  # the URL parser reads it as an IPv4 address
        parts = host.rstrip(".").split(".")
        dotted = len(parts) == 4 and all(p.isdigit() and str(int(p)) == p for p in parts)
        if not dotted or not all(int(p) <= 255 for p in parts) or host.endswith("."):
            raise rejected(given, "has a host the URL parser reads as a shortened IPv4 address")
    return host


def _path(text: str, given: str) -> str:
    segments: list[str] = []
    pieces = text.split("/")[1:]
    for i, raw in enumerate(pieces):
        last = i == len(pieces) - 1
        seg = raw.lower()
        if seg in _SINGLE_DOT:
            if last:
                segments.append("")
        elif seg in _DOUBLE_DOT:
            if segments:
                segments.pop()
            if last:
                segments.append("")
        else:
            segments.append(_encode(raw, given))
    return "/" + "/".join(segments)


def _encode(segment: str, given: str) -> str:
    if "%" in _ESCAPE.sub("", segment):
        raise rejected(given, "has a '%' that does not start a %XX escape")
    if _UNSURE_IN_PATH & set(segment):
        raise rejected(given, "has a character in its path that browsers do not agree on")
    out = []
    for ch in segment:
        if ord(ch) in _PATH_ENCODE or not ch.isascii():
            out.append("".join(f"%{b:02X}" for b in ch.encode("utf-8")))
        else:
            out.append(ch)
    return "".join(out)


def canonical_realm(text: object) -> str:
    """The canonical (WHATWG) form of the realm URL ``text``; :class:`InvalidRealm` (one line,
    naming the input) when it is not a usable realm or cannot be canonicalised with certainty."""
    if not isinstance(text, str):
        raise rejected(text, f"must be a string, not {type(text).__name__}")
    url = _REMOVED.sub("", text.strip(_STRIP)).replace("\\", "/")
    scheme, colon, rest = url.partition(":")
    scheme = scheme.lower()
    if not colon or scheme not in SCHEMES or not rest.startswith("//"):
        raise rejected(text, "must be an absolute http(s) URL")
    rest = rest[2:]
    if "?" in rest or "#" in rest:
        raise rejected(text, "must not have a query or fragment")
    authority, slash, path = rest.partition("/")
    if "@" in authority:
        raise rejected(text, "must not carry credentials (user:password@)")
    host, port = authority, ""
    if not authority.endswith("]") and ":" in authority:
        host, _, port = authority.rpartition(":")
    if port and not port.isdigit():
        raise rejected(text, "has a malformed port")
    if not host:
        raise rejected(text, "has no host")
    netloc = _host(host, text)
    if port and int(port) > 65535:
        raise rejected(text, "has a port above 65535")
    if port and int(port) != SCHEMES[scheme]:
        netloc += f":{int(port)}"
    href = f"{scheme}://{netloc}{_path(slash + path, text) if slash else '/'}"
    return check_realm(href, text)


def realm_of(url: str, realms: Iterable[str]) -> str | None:
    """The longest of ``realms`` (canonical) that the canonical ``url`` falls under."""
    best: str | None = None
    for realm in realms:
        if url.startswith(realm) and (best is None or len(realm) > len(best)):
            best = realm
    return best
