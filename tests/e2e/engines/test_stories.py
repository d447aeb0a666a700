"""The user stories, each written once and run in Chromium, Firefox and WebKit.

The steps run in the scenario pages (``tests/e2e/pages/engines/scenario.js``); a thin driver per
engine opens tabs and calls them (``drivers.py``). No engine-only tool here (no CDP, no fake
clock, no request interception): short-lived tokens stand in for time, and the servers' logs say
what went over the wire. What an engine may legitimately do differently is not asserted (WebKit's
preload scanner requests an early ``<img>`` twice before the worker controls the page).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jwt
import pytest
from dpop_realm import DPoPLog, dpop_realm_app, hs256_tokens
from drivers import Profile
from joserfc.jwk import ECKey
from support import (
    PAGES,
    STORAGE_KEY,
    TRUSTED_TYPES,
    Servers,
    auth_seen,
    strict_csp,
    wait_until,
)

from pyauth_web import dpop
from pyauth_web.demo.servers import DEMO_SECRET, Serving, host_app

REALM_IMAGES = 10
MAX_FIRST_PAINT_REQUESTS = 3  # without the header (once, or twice by a preload scanner), then with it


def story(host: str, realms: str, *, skew: float = 60, refresh: str = "", dpop: str = "",
          page: str = "story") -> str:
    """A scenario page's URL; every template field is given (an absent one stays literal)."""
    query = urlencode({"realms": realms, "skew": skew, "refresh": refresh, "dpop": dpop})
    return f"{host}/t/engines/{page}.html?{query}"


def open_ready(profile: Profile, url: str) -> Any:
    tab = profile.open(url)
    state = profile.call(tab, "ready")
    assert state["controlled"], state
    return tab


def no_problems(profile: Profile, *tabs: Any) -> None:
    for tab in tabs:
        assert profile.call(tab, "problems") == {"authErrors": [], "unhandled": [], "violations": []}


def after(log_entries: list[dict[str, Any]], since: float, path_part: str) -> list[Any]:
    return [e["auth"] for e in log_entries if e["t"] >= since and path_part in e["path"]]


def test_first_visit_signed_in_shows_realm_images_without_a_reload(
    profile: Profile, servers: Servers, run_id: str
) -> None:
    token = servers.token(ttl=3600)
    tab = profile.open(f"{servers.host}/t/engines/plain.html")
    profile.call(tab, "signIn", STORAGE_KEY, servers.realm, token)
    profile.goto(tab, f"{servers.host}/t/engines/first.html?run={run_id}&skew=60")
    profile.call(tab, "ready")
    shown = profile.call(tab, "htmlImages", 15_000)
    assert shown == {"shown": REALM_IMAGES, "of": REALM_IMAGES}
    assert profile.call(tab, "navigationType") == "navigate"  # no reload of the page
    for i in range(REALM_IMAGES):
        seen = servers.realm_auth(f"/img/fv-{run_id}-{i}")
        assert seen[-1] == f"Bearer {token}", (i, seen)
        assert len(seen) <= MAX_FIRST_PAINT_REQUESTS, (i, seen)
    no_problems(profile, tab)


def test_later_visit_images_through_the_worker_and_nothing_elsewhere(
    profile: Profile, servers: Servers, run_id: str
) -> None:
    realm = servers.realm + "app/"  # a path-scoped realm: its origin's other paths are siblings
    tab = open_ready(profile, story(servers.host, realm))
    token = servers.token(ttl=3600, realm=realm)
    profile.call(tab, "setToken", realm, token)
    no_problems(profile, tab)
    profile.reload(tab)  # the later visit
    profile.call(tab, "ready")
    ours = [f"{realm}img/later-{run_id}-{i}" for i in range(10)]
    sibling = [f"{servers.realm}img/sibling-{run_id}-{i}" for i in range(3)]
    foreign = [f"{servers.other}img/foreign-{run_id}-{i}" for i in range(3)]
    assert profile.call(tab, "loadImages", ours) == [True] * 10
    profile.call(tab, "loadImages", sibling + foreign)  # they fail or not: what matters is the header
    for i in range(10):
        assert servers.realm_auth(f"/app/img/later-{run_id}-{i}") == [f"Bearer {token}"]
    for i in range(3):
        assert servers.realm_auth(f"/img/sibling-{run_id}-{i}") == [None]
        assert auth_seen(servers.other_log, f"/img/foreign-{run_id}-{i}") == [None]
    no_problems(profile, tab)


def test_three_tabs_across_one_expiry_refresh_once(
    profile: Profile, servers: Servers, run_id: str
) -> None:
    url = story(servers.host, servers.realm, refresh="/refresh")
    tabs = [open_ready(profile, url) for _ in range(3)]
    # All three visible (none held back as a hidden tab): each may refresh, the lock decides.
    assert [profile.call(tab, "visibility") for tab in tabs] == ["visible"] * 3
    for tab in tabs:
        profile.call(tab, "configure", {"refreshURL": f"{servers.host}/refresh", "skew": 2,
                                        "jitter": 0})
    token = servers.token(ttl=6)
    since = time.time()
    profile.call(tabs[0], "setToken", servers.realm, token)
    fresh = {profile.call(tab, "newToken", servers.realm, token, 15_000) for tab in tabs}
    assert len(fresh) == 1  # all tabs end with the same new token
    assert len(servers.issuer.refreshes(since)) == 1
    (new,) = fresh
    assert profile.call(tabs[2], "loadImages", [f"{servers.realm}img/three-{run_id}"]) == [True]
    assert servers.realm_auth(f"/img/three-{run_id}") == [f"Bearer {new}"]
    assert len(servers.issuer.refreshes(since)) == 1
    no_problems(profile, *tabs)


def test_logout_in_one_tab_holds_in_every_tab_and_the_worker(
    profile: Profile, servers: Servers, run_id: str
) -> None:
    url = story(servers.host, servers.realm)
    a, b = open_ready(profile, url), open_ready(profile, url)
    token = servers.token(ttl=3600)
    profile.call(a, "setToken", servers.realm, token)
    assert profile.call(b, "newToken", servers.realm, None, 5_000) == token
    assert profile.call(b, "loadImages", [f"{servers.realm}img/in-{run_id}"]) == [True]
    profile.call(b, "clearTokens")
    since = time.time()
    for tab in (a, b):
        profile.call(tab, "loadImages", [f"{servers.realm}img/out-{run_id}-{i}" for i in range(5)])
    no_problems(profile, a, b)
    profile.reload(a)
    profile.call(a, "ready")
    profile.call(a, "loadImages", [f"{servers.realm}img/out-{run_id}-reloaded"])
    assert after(servers.realm_log.entries, since, f"out-{run_id}") == [None] * 11
    for tab in (a, b):
        assert profile.call(tab, "findAtRest", token) == []
    no_problems(profile, a, b)


def test_stale_tab_shown_again_refreshes_once_and_images_load(
    profile: Profile, servers: Servers, run_id: str
) -> None:
    tab = open_ready(profile, story(servers.host, servers.realm, refresh="/refresh"))
    profile.call(tab, "configure", {"refreshURL": f"{servers.host}/refresh", "skew": 2,
                                    "jitter": 0})
    token = servers.token(ttl=4)
    signed_in = time.time()
    profile.call(tab, "setToken", servers.realm, token)
    profile.hide(tab)
    profile.call(tab, "becomes", "hidden", 5_000)
    wait_until(lambda: time.time() > jwt.decode(token, options={"verify_signature": False})["exp"] + 1,
               10, "the token's expiry")
    assert servers.issuer.refreshes(signed_in) == []  # hidden: no refresh ahead of time
    since = time.time()
    profile.show(tab)
    profile.call(tab, "becomes", "visible", 5_000)
    # The pre-warm alone refreshes the stale token, before the page asks for anything.
    profile.call(tab, "event", "token-refreshed", 5_000)
    new = profile.call(tab, "getToken", servers.realm)
    assert new not in (None, token)
    assert profile.call(tab, "loadImages", [f"{servers.realm}img/stale-{run_id}-{i}"
                                            for i in range(5)]) == [True] * 5
    assert len(servers.issuer.refreshes(since)) == 1
    assert all(servers.realm_auth(f"/img/stale-{run_id}-{i}") == [f"Bearer {new}"]
               for i in range(5))
    no_problems(profile, tab)


def test_a_site_forgotten_by_the_browser_is_a_signed_out_user(
    profile: Profile, servers: Servers, run_id: str
) -> None:
    """Safari deletes an origin's script-writable storage and its service worker after 7 days
    of use without a visit (tracking prevention). The next visit is a signed-out user: the page
    works, no request carries a token, no `console:auth-error`, no retry loop."""
    url = story(servers.host, servers.realm, refresh="/refresh")
    tab = open_ready(profile, url)
    token = servers.token(ttl=3600)
    profile.call(tab, "setToken", servers.realm, token)
    assert profile.call(tab, "loadImages", [f"{servers.realm}img/before-{run_id}"]) == [True]
    no_problems(profile, tab)
    profile.goto(tab, f"{servers.host}/t/engines/plain.html")  # the user leaves the site
    assert profile.call(tab, "forgetSite") == []
    since = time.time()
    profile.goto(tab, url)  # a week later
    profile.call(tab, "ready")
    images = [f"{servers.realm}img/after-{run_id}-{i}" for i in range(5)]
    assert profile.call(tab, "loadImages", images) == [False] * 5  # the realm refuses: no token
    assert profile.call(tab, "getToken", servers.realm) is None
    assert profile.call(tab, "fetchStatus", f"{servers.realm}api/after-{run_id}") == 401
    assert after(servers.realm_log.entries, since, f"after-{run_id}") == [None] * 6  # once each
    assert servers.issuer.refreshes(since) == []
    assert profile.call(tab, "findAtRest", token) == []
    no_problems(profile, tab)


WIPE_ROUNDS = 3


@pytest.mark.parametrize("what", ["storage", "database", "all"])
def test_a_wipe_of_the_site_s_storage_with_tabs_open_signs_out_everywhere(
    profile: Profile, servers: Servers, run_id: str, what: str
) -> None:
    """A host's "wipe everything" logout, or storage lost while tabs are open: one tab clears
    localStorage (`storage`), deletes every database and cache (`database`), or both. Every tab
    and the worker are signed out at once (at most one request in flight as the tabs learn it
    may still carry the token), a reload too, and stay so; the session is not written back.
    Repeated, each round right after the previous round's logout (inside the 2 s the record
    allows storage to lag behind the runtime's own removal)."""
    url = story(servers.host, servers.realm)
    a, b = open_ready(profile, url), open_ready(profile, url)
    for n in range(WIPE_ROUNDS):
        run = f"{run_id}-{n}"
        token = servers.token(ttl=3600)
        profile.call(a, "setToken", servers.realm, token)
        assert profile.call(b, "newToken", servers.realm, None, 5_000) == token
        assert profile.call(a, "loadImages", [f"{servers.realm}img/w0-{run}"]) == [True]
        assert profile.call(b, "wipeStorage", what) == []
        for tab in (a, b):
            profile.call(tab, "tokenGone", servers.realm, 5_000)
        for i in range(2):  # the tabs signed out: the worker too, by the next request at the latest
            profile.call(a, "loadImages", [f"{servers.realm}img/w1-{run}-{i}"])
        assert servers.realm_auth(f"/img/w1-{run}-1") == [None], n
        images = [f"{servers.realm}img/w2-{run}-{k}" for k in range(3)]
        for tab in (a, b):
            profile.call(tab, "loadImages", images)
        no_problems(profile, a, b)
        profile.reload(a)
        profile.call(a, "ready")
        profile.call(a, "loadImages", [f"{servers.realm}img/w3-{run}"])
        assert profile.call(a, "getToken", servers.realm) is None, n
        assert after(servers.realm_log.entries, 0, f"w2-{run}") == [None] * 6, n
        assert servers.realm_auth(f"/img/w3-{run}") == [None], n
        assert profile.call(a, "findAtRest", token) == [], n
        profile.call(a, "clearTokens")  # the next round starts right after a logout
    no_problems(profile, a, b)


def thumbprint_of(proof: str) -> str:
    return str(ECKey.import_key(jwt.get_unverified_header(proof)["jwk"]).thumbprint())


def test_dpop_proofs_verified_key_not_extractable_logout_deletes_it(
    profile: Profile, servers: Servers, run_id: str
) -> None:
    log = DPoPLog()
    realm = servers.thread.serve(dpop_realm_app(hs256_tokens(DEMO_SECRET), log)) + "/"
    tab = open_ready(profile, story(servers.host, realm, dpop=realm))
    proof = profile.call(tab, "dpopProof", "GET", realm)
    bound = jwt.encode({"exp": int(time.time()) + 600, "cnf": {"jkt": thumbprint_of(proof)}},
                       DEMO_SECRET, algorithm="HS256")
    profile.call(tab, "setToken", realm, bound)
    assert profile.call(tab, "loadImages", [f"{realm}img/d-{run_id}-{i}" for i in range(3)]) == [True] * 3
    assert profile.call(tab, "fetchStatus", f"{realm}api/d-{run_id}") == 200
    for path in [f"/img/d-{run_id}-{i}" for i in range(3)] + [f"/api/d-{run_id}"]:
        (entry,) = log.for_path(path)
        assert entry["valid"] and entry["auth"].startswith("DPoP "), entry
    keys = profile.call(tab, "dpopKeys", dpop.KEY_DB, dpop.KEY_STORE)
    assert keys and all(k["exported"] is False and k["extractable"] is False for k in keys), keys
    profile.call(tab, "clearTokens")
    assert profile.call(tab, "dpopKeys", dpop.KEY_DB, dpop.KEY_STORE) == []
    assert profile.call(tab, "findAtRest", bound) == []
    no_problems(profile, tab)


@pytest.fixture
def short_tokens(servers: Servers) -> Iterator[None]:
    saved, servers.issuer.ttl = servers.issuer.ttl, 3.0
    yield
    servers.issuer.ttl = saved


def test_sse_rotated_mid_stream_and_websocket_rotation(
    profile: Profile, servers: Servers, run_id: str, short_tokens: None
) -> None:
    tab = open_ready(profile, story(servers.host, servers.realm, refresh="/refresh"))
    profile.call(tab, "configure", {"refreshURL": f"{servers.host}/refresh", "skew": 1,
                                    "jitter": 0.5})
    profile.call(tab, "setToken", servers.realm, servers.token(ttl=3))
    since = time.time()
    got = profile.call(tab, "stream", f"{servers.realm}sse/ticker?count=25&interval=0.2&run={run_id}",
                       "25", 25_000)
    assert got["ids"] == [str(k) for k in range(1, 26)], got
    seen = [e for e in servers.realm_log.entries if e["path"] == "/sse/ticker" and e["t"] >= since
            and run_id in e.get("query", run_id)]
    assert len(seen) >= 2 and all(e["valid"] for e in seen)  # the token expired mid-stream
    assert len({e["auth"] for e in seen}) == len(seen)  # a fresh token on every connect
    assert got["resyncs"] == len(seen) - 1

    since = time.time()
    ws = profile.call(tab, "socket", servers.realm.replace("http://", "ws://") + "ws", 2)
    assert ws["echoes"][0] == "hello" and ws["states"].count("rotating") == 2, ws
    connects = [e for e in servers.realm_log.entries
                if e["method"] == "WS" and e["path"] == "/ws" and e["t"] >= since]
    assert len(connects) == 3 and all(e["valid"] for e in connects)
    assert len({e["auth"] for e in connects}) == 3  # a fresh token on each rotation
    swaps = lambda: [str(e["body"]) for e in servers.realm_log.entries  # noqa: E731
                     if e["path"] == "/ws/message" and e["t"] >= since
                     and str(e["body"]).startswith("during-swap")]
    wait_until(lambda: len(swaps()) >= 2, 5, "the messages sent while rotating")
    assert len(swaps()) == len(set(swaps())) == 2  # each arrived once
    no_problems(profile, tab)


@pytest.mark.parametrize("policy", ["strict", "trusted-types"])
def test_strict_csp_and_trusted_types(
    profile: Profile, servers: Servers, bundle_dir: Path, run_id: str, policy: str
) -> None:
    """The runtime under a strict CSP, and with Trusted Types enforced: all three engines here
    enforce them (Chromium 83+, Firefox 148+, Safari 26+ / WebKitGTK 2.50)."""
    csp = strict_csp(servers.realm) + (TRUSTED_TYPES if policy == "trusted-types" else "")
    host = servers.thread.serve(
        host_app(bundle_dir, issuer=servers.issuer, page_vars={"REALM": servers.realm},
                 extra_dirs={"t": PAGES}, headers={"Content-Security-Policy": csp})
    )
    tab = open_ready(profile, story(host, servers.realm))
    token = servers.token()
    profile.call(tab, "setToken", servers.realm, token)
    assert profile.call(tab, "loadImages", [f"{servers.realm}img/csp-{policy}-{run_id}"]) == [True]
    assert servers.realm_auth(f"/img/csp-{policy}-{run_id}") == [f"Bearer {token}"]
    no_problems(profile, tab)  # the first visit: worker installed, no securitypolicyviolation
    profile.reload(tab)  # the later visit (snapshot, worker in place), same policy
    profile.call(tab, "ready")
    no_problems(profile, tab)  # no securitypolicyviolation either
    assert profile.call(tab, "trustedTypesEnforced") is (policy == "trusted-types")


@pytest.mark.parametrize("precompressed", [True, False], ids=["precompressed", "as-is"])
def test_a_host_sending_the_bundle_precompressed_or_as_it_is(
    profile: Profile, servers: Servers, bundle_dir: Path, run_id: str, precompressed: bool
) -> None:
    """The bundle's .br/.gz copies sent with Content-Encoding, or every file as it is: a first
    visit restores the bundle's snapshot (a fast link), a later one the copy it kept."""
    host = servers.thread.serve(host_app(
        bundle_dir, issuer=servers.issuer, page_vars={"REALM": servers.realm},
        extra_dirs={"t": PAGES}, serving=Serving(precompressed=precompressed)))
    tab = open_ready(profile, story(host, servers.realm))
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    shipped, sizes = manifest["snapshot"], manifest["sizes"]
    for path in ("pyodide/pyodide.asm.wasm", "sw.js", shipped["plain"], shipped["bytecode"]):
        assert (bundle_dir / f"{path}.br").is_file() and (bundle_dir / f"{path}.gz").is_file()
    assert not (bundle_dir / "pyodide/python_stdlib.zip.gz").exists()  # a zip of deflated files
    info = profile.call(tab, "startInfo")
    marks, files = info["marks"], info["files"]
    assert marks["pyodide-loaded"]["detail"] == {"from": "bundle"}, marks  # loopback: it pays
    choice = marks["choice"]["detail"]
    assert choice["restore"] is True, choice
    wasm = files["pyodide/pyodide.asm.wasm"]
    assert wasm["decoded"] == (bundle_dir / "pyodide/pyodide.asm.wasm").stat().st_size, wasm
    if precompressed:  # the engine's choice: br or gzip
        assert wasm["encoded"] < wasm["decoded"] / 2, wasm
        assert choice["encoding"] in ("br", "gzip"), choice
        assert files[shipped["plain"]]["encoded"] == sizes[shipped["plain"]][choice["encoding"]]
        assert shipped["file"] not in files
    else:  # the plain snapshot dropped at its headers, for the gzip copy unpacked in the page
        assert wasm["encoded"] == wasm["decoded"], wasm
        assert choice["encoding"] == "identity", choice
        assert files[shipped["file"]]["encoded"] == shipped["stored"], files
    token = servers.token(ttl=3600)
    profile.call(tab, "setToken", servers.realm, token)
    assert profile.call(tab, "loadImages", [f"{servers.realm}img/served-{run_id}"]) == [True]
    assert servers.realm_auth(f"/img/served-{run_id}") == [f"Bearer {token}"]
    no_problems(profile, tab)
    profile.reload(tab)
    profile.call(tab, "ready")
    assert profile.call(tab, "startInfo")["marks"]["pyodide-loaded"]["detail"] == {"from": "cache"}
    no_problems(profile, tab)


def test_boot_idle_shows_images_from_the_worker_then_starts_after_load(
    profile: Profile, servers: Servers, run_id: str
) -> None:
    """data-boot="idle": the host's load event comes first, with the realm images of its HTML
    shown by the worker from the token it keeps; the runtime starts after it."""
    tab = open_ready(profile, story(servers.host, servers.realm))
    token = servers.token(ttl=3600)
    profile.call(tab, "setToken", servers.realm, token)
    profile.goto(tab, f"{servers.host}/t/engines/idle.html?run={run_id}")
    at_load = profile.call(tab, "atLoad", 15_000)
    assert (at_load["shown"], at_load["of"]) == (5, 5), at_load
    profile.call(tab, "ready")
    marks = profile.call(tab, "startInfo")["marks"]
    assert marks["start"]["t"] >= at_load["t"], (marks, at_load)
    for i in range(5):
        seen = servers.realm_auth(f"/img/idle-{run_id}-{i}")
        assert seen and set(seen) == {f"Bearer {token}"}, (i, seen)
    no_problems(profile, tab)
