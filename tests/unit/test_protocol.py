from __future__ import annotations

import re
from pathlib import Path

import jwt

from pyauth_web import dpop, protocol, record
from pyauth_web.tokens import DEFAULT_SKEW_SECONDS, DEFAULT_STORAGE_KEY, MAX_EXP, TokenStore

ROOT = Path(__file__).resolve().parents[2]
NOW = 1_800_000_000.0


def js_message_names(path: Path) -> dict[str, str]:
    """The ``const MSG = Object.freeze({...})`` table of a JS file."""
    source = path.read_text()
    block = re.search(r"const MSG = Object\.freeze\(\{(.*?)\}\);", source, re.S)
    assert block, f"no MSG table in {path}"
    return dict(re.findall(r"(\w+):\s*'([^']+)'", block.group(1)))


def test_service_worker_and_python_agree_on_message_names() -> None:
    assert js_message_names(ROOT / "sw" / "sw.js") == protocol.MESSAGE_NAMES


def test_loader_names_are_a_subset_of_the_protocol() -> None:
    loader = js_message_names(ROOT / "web" / "pyauth-web.js")
    assert loader and loader.items() <= protocol.MESSAGE_NAMES.items()


def test_budgets_agree() -> None:
    source = (ROOT / "sw" / "sw.js").read_text()
    assert f"ANSWER_BUDGET_MS = {protocol.ANSWER_BUDGET_MS};" in source
    assert f"PENDING_BUDGET_MS = {protocol.PENDING_BUDGET_MS};" in source


def js_const(path: Path, name: str) -> str:
    """The literal of ``const NAME = <literal>;`` in a JS file (one definition only)."""
    found = re.findall(rf"const {name} = ([^;]+);", path.read_text())
    assert len(found) == 1, f"{name} defined {len(found)} times in {path.name}"
    return found[0].strip()


def test_shared_constants_agree() -> None:
    """Every value both languages use is defined once per language; this fails when they differ."""
    sw, loader = ROOT / "sw" / "sw.js", ROOT / "web" / "pyauth-web.js"
    # The worker has no skew default: every message that gives it a token carries the page's.
    assert "DEFAULT_SKEW" not in sw.read_text()
    assert "skew: null," in sw.read_text()
    assert int(js_const(sw, "ASK_OTHERS_AFTER_MS")) == protocol.ASK_OTHERS_AFTER_MS
    assert int(js_const(sw, "ANSWER_BUDGET_MS")) == protocol.ANSWER_BUDGET_MS
    assert int(js_const(sw, "PENDING_BUDGET_MS")) == protocol.PENDING_BUDGET_MS
    assert protocol.ANSWER_BUDGET_MS < protocol.PENDING_BUDGET_MS
    assert int(js_const(sw, "PROTOCOL_VERSION")) == protocol.PROTOCOL_VERSION
    assert int(js_const(loader, "PROTOCOL_VERSION")) == protocol.PROTOCOL_VERSION
    assert protocol.ASK_OTHERS_AFTER_MS < protocol.ANSWER_BUDGET_MS
    assert js_const(sw, "STATE_CACHE") == f"'{protocol.STATE_CACHE}'"
    assert js_const(loader, "DEFAULT_STORAGE_KEY") == f"'{DEFAULT_STORAGE_KEY}'"
    assert int(js_const(loader, "ACK_TIMEOUT_MS")) == protocol.ACK_TIMEOUT_MS
    # The loader holds no skew default of its own: the runtime applies DEFAULT_SKEW_SECONDS.
    assert "skew: data.skew === undefined ? null" in loader.read_text()
    assert js_const(loader, "EVENT") == f"'{protocol.EVENT}'"
    # The session record: the loader writes it (and its logout without the runtime), the worker
    # reads it (with the same bounds) and hears its notices.
    assert int(js_const(sw, "MAX_REMOVED")) == record.MAX_SINCE
    assert int(js_const(sw, "MAX_TOKEN_LENGTH")) == record.MAX_TOKEN_LENGTH
    assert js_const(loader, "RECORD_DB") == f"'{protocol.RECORD_DB}'"
    assert js_const(loader, "RECORD_STORE") == f"'{protocol.RECORD_STORE}'"
    assert js_const(loader, "RECORD_CHANNEL") == f"'{protocol.RECORD_CHANNEL}'"
    table = re.search(r"const RECORD = Object\.freeze\(\{(.*?)\}\);", sw.read_text(), re.S)
    assert table, "no RECORD table in sw.js"
    assert dict(re.findall(r"(\w+): '([^']+)'", table.group(1))) == {
        "DB": protocol.RECORD_DB, "STORE": protocol.RECORD_STORE,
        "CHANNEL": protocol.RECORD_CHANNEL, "NOTICE": protocol.RECORD_NOTICE,
    }


def test_lock_and_channel_names() -> None:
    """Names other tabs (and other versions of the runtime) must agree on."""
    assert protocol.channel_name("app") == "pyauth-web:app"
    assert protocol.lock_name("app", "https://a.example/") == "pyauth-web:app:https://a.example/"


def test_shared_names_are_written_once() -> None:
    """Each name both sides use is one literal in the Python package and at most one per JS
    file (each checked against Python above): changing it is one edit per language."""
    package = [p.read_text() for p in (ROOT / "pyauth_web").rglob("*.py") if "demo" not in p.parts]
    scripts = [(ROOT / "sw" / "sw.js").read_text(), (ROOT / "web" / "pyauth-web.js").read_text()]
    names = [protocol.STATE_CACHE, DEFAULT_STORAGE_KEY, protocol.EVENT, protocol.RECORD_DB,
             protocol.RECORD_STORE, protocol.RECORD_CHANNEL, protocol.REFRESHED_EVENT,
             protocol.AUTH_ERROR_EVENT, dpop.KEY_DB]
    for name in names:
        assert sum(t.count(f'"{name}"') for t in package) == 1, name
        assert all(t.count(f"'{name}'") <= 1 for t in scripts), name
    assert sum('"pyauth-web:{' in t for t in package) == 1  # lock and channel names: protocol.py


def test_exp_range_and_redirect_modes_agree() -> None:
    source = (ROOT / "sw" / "sw.js").read_text()
    assert f"const MAX_EXP = {MAX_EXP};" in source
    assert f"const REDIRECT_FOLLOW = '{protocol.Redirect.FOLLOW}';" in source
    assert f"const REDIRECT_ERROR = '{protocol.Redirect.ERROR}';" in source
    assert [m.value for m in protocol.Redirect] == ["follow", "error"]  # fetch's own names


def answer(store: TokenStore, data: object) -> dict[str, object]:
    """What the page replies (the runtime's path for a fresh token)."""
    url = protocol.parse_token_request(data)
    assert url is not None
    return protocol.token_reply(store.lookup(url), "app", version=7)


def test_answer_token_request() -> None:
    store = TokenStore(clock=lambda: NOW)
    token = jwt.encode({"exp": int(NOW + 3600)}, "k" * 32, algorithm="HS256")
    store.set("https://a.example/", token)
    req = {"type": protocol.REQUEST_REALM_TOKEN, "requestURL": "https://a.example/img/1"}
    assert answer(store, req) == {
        "app": "app",
        "version": 7,
        "realmURL": "https://a.example/",
        "token": token,
        "exp": NOW + 3600,
        "redirect": "follow",
        "dpop": False,
        "skew": DEFAULT_SKEW_SECONDS,
    }
    miss = {"type": protocol.REQUEST_REALM_TOKEN, "requestURL": "https://b.example/"}
    assert answer(store, miss) == {"app": "app"}


def test_malformed_requests_are_ignored() -> None:
    store = TokenStore()
    for bad in (
        None,
        42,
        "x",
        [],
        {},
        {"type": "other"},
        {"type": protocol.REQUEST_REALM_TOKEN},
        {"type": protocol.REQUEST_REALM_TOKEN, "requestURL": 7},
        {"type": protocol.REQUEST_REALM_TOKEN, "requestURL": "x" * 10_000},
    ):
        assert protocol.parse_token_request(bad) is None
    odd = {"type": protocol.REQUEST_REALM_TOKEN, "requestURL": "not a url"}
    assert answer(store, odd) == {"app": "app"}


def test_sync_message_lists_configured_realms() -> None:
    store = TokenStore(clock=lambda: NOW)
    store.set("https://a.example/", jwt.encode({}, "k" * 32, algorithm="HS256"))
    msg = protocol.sync_tokens(store, ["https://b.example/"])
    assert msg["type"] == protocol.SYNC_TOKENS
    assert msg["realms"] == ["https://a.example/", "https://b.example/"]
    assert msg["expires"] == {"https://a.example/": None}


def test_redirect_mode_defaults_by_realm_scope_and_takes_overrides() -> None:
    assert protocol.redirect_mode("https://a.example/") is protocol.Redirect.FOLLOW
    assert protocol.redirect_mode("https://a.example/app/") is protocol.Redirect.ERROR
    overrides = protocol.check_redirects({"HTTPS://A.example/app/": "follow"})
    assert overrides == {"https://a.example/app/": "follow"}
    assert overrides["https://a.example/app/"] is protocol.Redirect.FOLLOW
    assert protocol.redirect_mode("https://a.example/app/", overrides) is protocol.Redirect.FOLLOW
    for bad in ({"https://a.example/": "manual"}, {"ftp://x/": "follow"}, ["follow"]):
        try:
            protocol.check_redirects(bad)
        except ValueError as exc:
            assert "redirects" in str(exc) or "realm" in str(exc).lower()
        else:
            raise AssertionError(f"accepted {bad!r}")


def test_sync_message_carries_redirect_modes() -> None:
    store = TokenStore(clock=lambda: NOW)
    token = jwt.encode({}, "k" * 32, algorithm="HS256")
    store.set("https://a.example/", token)
    store.set("https://a.example/app/", token)
    msg = protocol.sync_tokens(store, [], {"https://a.example/": "error"})
    assert msg["redirects"] == {"https://a.example/": "error", "https://a.example/app/": "error"}


def test_messages_that_carry_a_token_say_whether_it_is_dpop_bound() -> None:
    store = TokenStore(clock=lambda: NOW)
    bound = jwt.encode({"exp": int(NOW + 60), "cnf": {"jkt": "A" * 43}}, "k" * 32, algorithm="HS256")
    plain = jwt.encode({"exp": int(NOW + 60)}, "k" * 32, algorithm="HS256")
    a = store.set("https://a.example/", bound)
    store.set("https://b.example/", plain)
    sync = protocol.sync_tokens(store, dpop={"https://a.example/"})
    assert sync["dpop"] == {"https://a.example/": True}
    assert protocol.set_realm_token(a, 60, dpop=True)["dpop"] is True
    assert protocol.token_reply(a, "app", dpop=True)["dpop"] is True
    assert protocol.token_reply(None, "app", dpop=True) == {"app": "app"}


def test_dpop_names_and_limits_agree() -> None:
    """The worker signs proofs in JS (pyauth_web/dpop.py's rules), and reads the key the loader
    stores: the names and limits both sides use are the same."""
    from pyauth_web import dpop

    sw, loader = (ROOT / "sw" / "sw.js").read_text(), (ROOT / "web" / "pyauth-web.js").read_text()
    table = re.search(r"const DPOP = Object\.freeze\(\{(.*?)\}\);", sw, re.S)
    assert table, "no DPOP table in sw.js"
    fields = dict(re.findall(r"(\w+): '?([^',]+)'?", table.group(1)))
    assert fields == {
        "DB": dpop.KEY_DB, "STORE": dpop.KEY_STORE, "PROOF_HEADER": dpop.PROOF_HEADER,
        "NONCE_HEADER": dpop.NONCE_HEADER, "TYP": dpop.TYP, "ALG": dpop.ALG,
        "MAX_NONCE_LENGTH": str(dpop.MAX_NONCE_LENGTH), "MAX_ORIGINS": str(dpop.MAX_ORIGINS),
    }
    assert f"const DPOP_DB = '{dpop.KEY_DB}';" in loader
    assert f"const DPOP_STORE = '{dpop.KEY_STORE}';" in loader
    assert "NONCE_RE = /^[\\x21\\x23-\\x5b\\x5d-\\x7e]+$/" in sw  # NQCHAR, as dpop._NONCE
    assert dpop.NONCE_CHARS.pattern == r"[\x21\x23-\x5b\x5d-\x7e]+"
    # Which 401 asks for a nonce: the same two expressions on both sides.
    assert f"DPOP_CHALLENGE_RE = /{dpop.DPOP_CHALLENGE.pattern}/i;" in sw
    assert f"USE_NONCE_RE = /{dpop.USE_NONCE_ERROR.pattern}/;" in sw
