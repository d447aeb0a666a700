"""``configure()`` options, checked in one place (sans-I/O).

:func:`parse_options` turns the host's options (already converted to Python values by the
adapter; a ``refresh`` callback stays a callable) into :class:`Options`, or raises a one-line
``ValueError`` naming the bad input: an unknown key (``refreshUrl`` for ``refreshURL``), a value
of the wrong type, a number out of range, or two refreshers at once. Nothing is applied until
everything is checked, so a bad call leaves the previous configuration in force.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import oauth, protocol
from .realms import Canonicaliser, canonical_realm
from .refresh import BackoffPolicy, check_timeout

OPTIONS = (
    "refresh",
    "refreshURL",
    "oauth",
    "skew",
    "jitter",
    "retry",
    "refreshTimeout",
    "lockTimeout",
    "redirects",
    "dpop",
)
REFRESHERS = ("refresh", "refreshURL", "oauth")
OAUTH_OPTIONS = ("tokenEndpoint", "clientId", "scope")
RETRY_OPTIONS = ("attempts", "base", "cap")


@dataclass(frozen=True)
class OAuthOptions:
    token_endpoint: str
    client_id: str
    scope: str | None = None


@dataclass(frozen=True)
class Options:
    """One ``configure()`` call, checked. ``None`` (and an empty ``redirects``): not given,
    the current setting stays."""

    refresh: Callable[..., Any] | None = None
    refresh_url: str | None = None
    oauth: OAuthOptions | None = None
    skew: float | None = None
    jitter: float | None = None
    backoff: BackoffPolicy | None = None
    refresh_timeout: float | None = None
    lock_timeout: float | None = None
    redirects: dict[str, protocol.Redirect] | None = field(default=None)
    dpop: frozenset[str] | None = None  # realms whose (opaque) tokens are DPoP-bound


def dpop_realms(value: object, canonical: Canonicaliser = canonical_realm) -> frozenset[str]:
    """``dpop: [realmURL, ...]``: the realms whose tokens are DPoP-bound (a JWT with
    ``cnf.jkt`` is recognised without it); canonical; a one-line error names a bad entry."""
    if not isinstance(value, list | tuple):
        raise ValueError(f"dpop must be a list of realm URLs, got {value!r}")
    out = set()
    for realm in value:
        if not isinstance(realm, str):
            raise ValueError(f"dpop: a realm URL must be a string, got {realm!r}")
        try:
            out.add(canonical(realm))
        except ValueError as exc:
            raise ValueError(f"dpop: {exc}") from None
    return frozenset(out)


def _check_keys(value: Mapping[str, object], known: tuple[str, ...], name: str) -> None:
    unknown = sorted(str(k) for k in value if k not in known)
    if unknown:
        raise ValueError(f"{name}: unknown option {unknown[0]!r} (known: {', '.join(known)})")


def _mapping(value: object, name: str, shape: str) -> Mapping[str, object]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{name} must be an object {shape}, got {value!r}")
    return value


def seconds(value: object, name: str) -> float:
    """A finite number of seconds >= 0 (not a bool); else a one-line error naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < math.inf:
        raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value!r}")
    return float(value)


def backoff(value: object) -> BackoffPolicy:
    """``retry: {attempts, base, cap}`` as a policy (missing fields take the defaults)."""
    retry = _mapping(value, "retry", "{attempts, base, cap}")
    _check_keys(retry, RETRY_OPTIONS, "retry")
    fields: dict[str, Any] = {}
    if "attempts" in retry:
        attempts = retry["attempts"]
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            raise ValueError(f"retry.attempts must be a whole number >= 1, got {attempts!r}")
        fields["attempts"] = attempts
    for name in ("base", "cap"):
        if name in retry:
            fields[name] = seconds(retry[name], f"retry.{name}")
    return BackoffPolicy(**fields)


def _oauth(value: object) -> OAuthOptions:
    o = _mapping(value, "oauth", "{tokenEndpoint, clientId, scope?}")
    _check_keys(o, OAUTH_OPTIONS, "oauth")
    scope = o.get("scope")
    if scope is not None and not isinstance(scope, str):
        raise ValueError(f"oauth.scope must be a string, got {scope!r}")
    return OAuthOptions(
        oauth.check_endpoint(o.get("tokenEndpoint"), "oauth.tokenEndpoint"),
        oauth.check_client_id(o.get("clientId"), "oauth.clientId"),
        scope or None,
    )


def parse_options(
    opts: Mapping[str, object],
    *,
    refresh_timeout: float,
    lock_timeout: float,
    canonical: Canonicaliser = canonical_realm,
) -> Options:
    """Check one ``configure()`` call. ``refresh_timeout`` and ``lock_timeout`` are the values
    in force (a call may change one of them; the pair must stay ordered); ``canonical`` is the
    realm canonicaliser (the browser's URL parser in the page)."""
    if not isinstance(opts, Mapping):
        raise ValueError(f"configure() takes an object of options, got {opts!r}")
    _check_keys(opts, OPTIONS, "configure()")
    given = {k: v for k, v in opts.items() if v is not None}  # JS undefined/null: not given
    refreshers = [k for k in REFRESHERS if k in given]
    if len(refreshers) > 1:
        raise ValueError(f"configure(): pass one refresher, not {' and '.join(refreshers)}")
    refresh = given.get("refresh")
    if refresh is not None and not callable(refresh):
        raise ValueError(f"refresh must be a function, got {refresh!r}")
    refresh_url = given.get("refreshURL")
    if refresh_url is not None:
        refresh_url = oauth.check_endpoint(refresh_url, "refreshURL")
    if "refreshTimeout" in given:
        refresh_timeout = check_timeout(given["refreshTimeout"], "refreshTimeout")
    if "lockTimeout" in given:
        lock_timeout = check_timeout(given["lockTimeout"], "lockTimeout")
    if lock_timeout <= refresh_timeout:
        raise ValueError(
            f"lockTimeout ({lock_timeout:g} s) must exceed refreshTimeout "
            f"({refresh_timeout:g} s): a tab waiting for the lock must outlast one attempt"
        )
    redirects = given.get("redirects")
    return Options(
        refresh=refresh if callable(refresh) else None,
        refresh_url=refresh_url,
        oauth=_oauth(given["oauth"]) if "oauth" in given else None,
        skew=seconds(given["skew"], "skew") if "skew" in given else None,
        jitter=seconds(given["jitter"], "jitter") if "jitter" in given else None,
        backoff=backoff(given["retry"]) if "retry" in given else None,
        refresh_timeout=refresh_timeout,
        lock_timeout=lock_timeout,
        redirects=None if redirects is None else protocol.check_redirects(redirects, canonical),
        dpop=dpop_realms(given["dpop"], canonical) if "dpop" in given else None,
    )
