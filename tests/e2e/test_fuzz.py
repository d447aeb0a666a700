"""Issue 10 item 3: fuzzed protocol inputs, in real Chromium, in batches (hypothesis generates,
the page delivers). After each batch the worker still answers correctly, no ``Authorization``
reached the non-realm server, the page raised no error, and nothing grew without bound.

- page -> worker: random and malformed messages (wrong types, huge strings, ``__proto__`` /
  ``constructor`` keys, non-canonical realms, NaN/negative/huge ``exp``, thousands of realms),
  posted to every worker of the registration, as a page would;
- worker -> page: malformed ``request-realm-token`` events handed to the runtime's handler;
- page replies to the worker: a page without the runtime answering token requests with junk;
- storage: junk in ``localStorage`` (session and refresh tokens) followed by ``reload()``, and
  junk in the worker's saved state followed by a worker restart; non-JWT and 1 MB tokens.

``PYAUTH_WEB_FUZZ_BATCHES`` (default 4) sets the batches per kind; the counts are printed.
Hypothesis generates the inputs (seeded, one example per input: cheap); the test then delivers
them batch by batch. ``__proto__`` keys travel as JSON text parsed in the page (Playwright's own
argument serialiser drops them).
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import (
    LOAD_IMAGE,
    REFRESH_KEY,
    STORAGE_KEY,
    Servers,
    auth_seen,
    open_app,
    stop_service_worker,
    wait_controlled,
)

from pyauth_web import protocol
from pyauth_web.protocol import STATE_CACHE

BATCHES = int(os.environ.get("PYAUTH_WEB_FUZZ_BATCHES", "4"))
PER_BATCH = 60
COUNTS = {"inputs": 0, "page errors": 0, "foreign headers": 0, "batches": 0}
KEYS = ["__proto__", "constructor", "prototype", "type", "app", "realmURL", "token", "exp",
        "tokens", "expires", "realms", "skew", "redirect", "redirects", "ack", "fp", "url",
        "requestURL", "v", "toString", "hasOwnProperty"]
NUMBERS = st.one_of(st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from([math.nan, -1, 0, 253402300799, 253402300800, 1e309]))
STRINGS = st.one_of(st.text(max_size=30), st.sampled_from([
    "", "x" * 100_000, "https://a.example", "HTTPS://A.EXAMPLE/x/", "https://a.example/../",
    "https://a.example/%2e%2e/", "https://u:p@a.example/", "javascript:alert(1)", "__proto__",
    "not.a.jwt", "eyJhbGciOiJub25lIn0.eyJleHAiOiJOYU4ifQ.", "pyauth-web:session"]))
JSONISH = st.recursive(
    st.one_of(st.none(), st.booleans(), NUMBERS, STRINGS),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=8)),
                                            inner, max_size=5)),
    max_leaves=12,
)
TYPES = st.sampled_from([*protocol.MESSAGE_NAMES.values(), "Hello", "", "__proto__"])


def as_json(value: Any) -> str:
    """``value`` as JSON text the page turns back with REVIVE: Playwright's own argument
    serialiser skips ``__proto__`` keys, and JSON has no NaN or infinities."""

    def plain(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return "\u0000" + repr(v)  # revived in the page
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, list):
            return [plain(x) for x in v]
        return v

    return json.dumps(plain(value))


# JSON.parse keeps "__proto__" as an own key (a real hostile page's structured clone does too).
REVIVE = """(text) => JSON.parse(text, (k, v) => (typeof v === 'string' && v[0] === '\\u0000'
  ? { nan: NaN, inf: Infinity, '-inf': -Infinity }[v.slice(1)] : v))"""


def message(realm_hosts: list[str]) -> st.SearchStrategy[Any]:
    realm = st.one_of(STRINGS, st.builds(lambda h, p: h + p, st.sampled_from(realm_hosts),
                                         st.sampled_from(["", "/", "x/", "../", "a/%2e%2e/", "?q", "#f"])))
    structured = st.fixed_dictionaries(
        {"type": TYPES},
        optional={
            "app": st.one_of(st.just(STORAGE_KEY), STRINGS, JSONISH),
            "realmURL": realm, "token": st.one_of(STRINGS, JSONISH), "exp": st.one_of(NUMBERS, JSONISH),
            "tokens": st.one_of(st.dictionaries(realm, STRINGS, max_size=4), JSONISH),
            "expires": st.one_of(st.dictionaries(realm, NUMBERS, max_size=4), JSONISH),
            "realms": st.one_of(st.lists(realm, max_size=5), JSONISH),
            "skew": st.one_of(NUMBERS, JSONISH), "redirect": JSONISH, "redirects": JSONISH,
            "ack": JSONISH, "fp": JSONISH, "url": st.one_of(realm, JSONISH), "v": JSONISH,
        },
    )
    return st.one_of(structured, JSONISH)


def drawn(strategy: st.SearchStrategy[Any], n: int) -> list[Any]:
    """``n`` values of ``strategy``, one hypothesis example each (seeded: CI is reproducible).
    One example per value keeps generation cheap (2 s for 240 messages here; one example holding
    a list of 60 took ~25-90 s), and the browser work happens outside hypothesis."""
    out: list[Any] = []

    @settings(max_examples=n, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def collect(value: Any) -> None:
        out.append(value)

    collect()
    return out


def batches(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def realm_hosts(servers: Servers) -> list[str]:
    # Never the non-realm origin: a page may legitimately give the worker a token for any realm
    # it names, so the foreign-header check watches an origin no input names.
    return [servers.realm.rstrip("/"), "https://a.example", "http://127.0.0.1:1", "HTTP://A.example"]


def still_correct(page: Any, servers: Servers, tag: str, page_errors: list[str]) -> None:
    """The invariants after a batch; counts what they find before asserting."""
    token = servers.token()
    page.evaluate("() => pyauthWeb.clearTokens()")
    page.evaluate("([r, t]) => pyauthWeb.setToken(r, t)", [servers.realm, token])
    path = f"/img/fuzz-{tag}"
    ok = page.evaluate(LOAD_IMAGE, servers.realm + path[1:])
    foreign = [e for e in servers.other_log.entries if e["auth"] is not None]
    COUNTS["foreign headers"] = len(foreign)
    COUNTS["page errors"] = len(page_errors)
    COUNTS["batches"] += 1
    assert ok and auth_seen(servers.realm_log, path) == [f"Bearer {token}"], tag
    assert foreign == [] and page_errors == []
    state = page.evaluate("() => pyauthWeb.state()")  # valid JSON, bounded
    assert [t["realmURL"] for t in state["tokens"]] == [servers.realm]
    saved = page.evaluate("""async (name) => {
      let size = 0;
      const cache = await caches.open(name);
      for (const req of await cache.keys()) size += (await (await cache.match(req)).text()).length;
      return size; }""", STATE_CACHE)
    # The saved state is bounded by the worker's count bounds below (the flood batch fills them:
    # ~0.4 MB), whatever more junk comes.
    assert saved < 1_000_000, saved
    worker = page.context.service_workers[-1]
    sizes, bounds = worker.evaluate(SIZES), worker.evaluate(BOUNDS)  # the worker's own maps
    COUNTS["largest worker maps"] = max(COUNTS.get("largest worker maps", 0), max(sizes.values()))
    assert all(sizes[name] <= bound for name, bound in bounds.items()), (sizes, bounds)
    # the flood reaches past every bound the worker has (a raised bound cannot hide from it)
    assert all(FLOOD[name] > bounds[name] for name in FLOOD), (FLOOD, bounds)


SIZES = """() => {
  const most = (values) => values.reduce((a, b) => Math.max(a, b), 0);
  const states = [...apps.values()];
  return { apps: apps.size, joined: most([...members.values()].map((j) => j.length)),
    origins: most(states.map((s) => s.origins.size)), removed: most(states.map((s) => s.removedAt.size)),
    tokens: most(states.map((s) => s.tokens.size)), tickets: tickets.size,
    clients: members.size + silent.size, inflight: inflight.size, asking: asking.size };
}"""
# The bounds, read from the worker (sw.js's MAX_*; clients are pruned to the live ones past
# MAX_CLIENTS); in-flight asks have no constant of their own: 100 is far above what one page makes.
BOUNDS = """() => ({ apps: MAX_APPS, joined: MAX_APPS_PER_CLIENT, origins: MAX_ORIGINS,
  removed: MAX_REMOVED, tokens: MAX_TOKENS, tickets: MAX_TICKETS, clients: MAX_CLIENTS + 100,
  inflight: 100, asking: 100 })"""
# How many of each the flood makes (one client joins every flooded app)
FLOOD = {"apps": 1000, "joined": 1000, "removed": 1000, "origins": 1000, "tokens": 5000,
         "tickets": 200}


def flood(servers: Servers) -> list[dict[str, Any]]:
    """Far more apps, removals, origins, tokens and tickets than the worker keeps."""
    join = servers.host + "/__pyauth-web/join/"
    return [
        *({"type": "hello", "app": f"flood-{i}"} for i in range(FLOOD["apps"])),
        *({"type": "remove-realm-token", "app": STORAGE_KEY, "realmURL": f"{servers.realm}gone/{i}/"}
          for i in range(FLOOD["removed"])),
        {"type": "sync-tokens", "app": "flood-origins", "tokens": {},
         "realms": [f"https://o{i}.example/" for i in range(FLOOD["origins"])]},
        *({"type": "set-realm-token", "app": "flood-tokens", "realmURL": f"https://t.example/{i}/",
           "token": "t", "exp": None} for i in range(FLOOD["tokens"])),
        *({"type": "worker-ticket", "app": STORAGE_KEY, "url": f"{join}{i}"}
          for i in range(FLOOD["tickets"])),
    ]


POST_ALL = """async (text) => {
  const messages = (""" + REVIVE + """)(text);
  const reg = await navigator.serviceWorker.getRegistration();
  const workers = [reg.installing, reg.waiting, reg.active].filter(Boolean);
  for (const m of messages) for (const w of workers) { try { w.postMessage(m); } catch (e) {} }
  // One acknowledged message after the batch: the worker has handled everything before it.
  return new Promise((resolve) => {
    navigator.serviceWorker.addEventListener('message', function on(e) {
      if (e.data && e.data.ack === 'fuzz-done') { navigator.serviceWorker.removeEventListener('message', on); resolve(true); }
    });
    reg.active.postMessage({type: 'hello', app: 'fuzz-probe', ack: 'fuzz-done'});
    setTimeout(() => resolve(false), 30000);
  });
}"""


def test_fuzzed_page_to_worker_messages(page: Any, servers: Servers, run_id: str,
                                        page_errors: list[str]) -> None:
    open_app(page, servers)
    generated = drawn(message(realm_hosts(servers)), BATCHES * PER_BATCH)
    for n, messages in enumerate(batches(generated, PER_BATCH)):
        # Thousands of realms in one sync, once per run.
        if n == 0:
            many = {f"{servers.realm}many/{i}/": "t" for i in range(3000)}
            messages = [*messages, {"type": "sync-tokens", "app": STORAGE_KEY, "tokens": many,
                                    "expires": {}, "realms": list(many)}]
        if n == 2:  # and past every bound the worker keeps
            messages = [*messages, *flood(servers)]
        if n == 1:  # and own __proto__ keys, which only JSON.parse makes
            messages = [*messages, {"__proto__": {"type": "clear-tokens", "app": STORAGE_KEY}},
                        {"type": "sync-tokens", "app": STORAGE_KEY, "__proto__": {"x": 1},
                         "tokens": {"__proto__": "t"}, "realms": ["__proto__"]}]
        # The worker has handled the whole batch (a bounded wait), before the checks
        assert page.evaluate(POST_ALL, as_json(messages)) is True, n
        COUNTS["inputs"] += len(messages)
        still_correct(page, servers, f"msg-{n}-{run_id}", page_errors)
    print("fuzz page->worker:", COUNTS)


DISPATCH = """(text) => {
  const items = (""" + REVIVE + """)(text);
  let answered = 0;
  for (const data of items) {
    const ch = new MessageChannel();
    ch.port2.onmessage = () => { answered += 1; };
    navigator.serviceWorker.dispatchEvent(new MessageEvent('message', {data, ports: [ch.port1]}));
  }
  return new Promise((resolve) => setTimeout(() => resolve(answered), 200));
}"""


def test_fuzzed_requests_to_the_page_and_junk_in_storage(
    page: Any, servers: Servers, context: Any, run_id: str, page_errors: list[str]
) -> None:
    open_app(page, servers)
    writer = context.new_page()  # another tab of the origin: its writes are storage events here
    writer.goto(servers.host + "/t/bare.html")
    request = st.one_of(
        st.fixed_dictionaries({"type": st.just("request-realm-token"),
                               "requestURL": st.one_of(STRINGS, JSONISH)}),
        JSONISH,
    )
    all_requests = batches(drawn(request, BATCHES * PER_BATCH), PER_BATCH)
    all_stored = batches(drawn(st.one_of(JSONISH.map(json.dumps), STRINGS), BATCHES * 3), 3)
    for n, (requests, stored) in enumerate(zip(all_requests, all_stored, strict=True)):
        page.evaluate(DISPATCH, as_json(requests))  # malformed requests to the runtime's handler
        for raw in stored:  # junk session / refresh storage, then storage events and reload()
            page.evaluate("([k, v]) => localStorage.setItem(k, v)", [STORAGE_KEY, raw])
            page.evaluate("([k, v]) => localStorage.setItem(k, v)", [REFRESH_KEY, raw])
            page.evaluate("() => pyauthWeb.reload()")
            page.evaluate("() => pyauthWeb.state()")  # always valid JSON
            for key in (STORAGE_KEY, REFRESH_KEY, "unrelated"):  # storage events with junk
                writer.evaluate("([k, v]) => localStorage.setItem(k, v)", [key, raw + "!"])
                # (the page may have rewritten the session already, as the session record holds
                # it, or moved refresh tokens an older bundle kept there into the record)
                page.wait_for_function("([k, v, ours]) => { const s = localStorage.getItem(k); return s === v"
                                       " || (ours && (s === null || !s.endsWith('!'))); }",
                                       arg=[key, raw + "!", key != "unrelated"])
            page.evaluate("() => pyauthWeb.state()")
        # Junk in the worker's saved state, then a restart: it must recover.
        page.evaluate("""async ([name, junk]) => {
          const cache = await caches.open(name);
          for (const req of await cache.keys()) await cache.put(req, new Response(junk));
        }""", [STATE_CACHE, stored[0]])
        stop_service_worker(context, page)
        wait_controlled(page)
        COUNTS["inputs"] += len(requests) + 5 * len(stored) + 1
        still_correct(page, servers, f"req-{n}-{run_id}", page_errors)
    # Non-JWT and 1 MB tokens are refused with a one-line error; a 1 MB JWT works end to end.
    for bad in ("not-a-jwt", "x" * 1_000_000):
        message_ = page.evaluate("([r, t]) => pyauthWeb.setToken(r, t).then(() => null, (e) => e.message)",
                                 [servers.realm, bad])
        assert message_ and "\n" not in message_ and len(message_) < 500
    big = servers.issuer.mint(servers.realm, 300, sub="u" * 1_000_000)
    page.evaluate("([r, t]) => pyauthWeb.setToken(r, t)", [servers.realm, big])
    path = f"/img/fuzz-big-{run_id}"
    assert page.evaluate(LOAD_IMAGE, servers.realm + path[1:]) is not None  # no crash
    COUNTS["inputs"] += 3
    still_correct(page, servers, f"after-big-{run_id}", page_errors)
    print("fuzz requests/storage:", COUNTS)


def test_fuzzed_replies_to_the_worker(page: Any, servers: Servers, run_id: str,
                                      page_errors: list[str]) -> None:
    """A page without the runtime answers the worker's token requests with junk: the worker
    never crashes, and never sends a header to the non-realm origin."""
    page.goto(servers.host + "/t/bare.html")
    wait_controlled(page)
    reply = st.one_of(
        st.fixed_dictionaries({"app": st.one_of(st.just(STORAGE_KEY), JSONISH)},
                              optional={"realmURL": st.one_of(STRINGS, JSONISH, st.just(servers.other)),
                                        "token": st.one_of(STRINGS, JSONISH),
                                        "exp": st.one_of(NUMBERS, JSONISH), "type": TYPES,
                                        "redirect": JSONISH, "skew": NUMBERS}),
        JSONISH)
    for batch in batches(drawn(reply, BATCHES * 20), 20):
        statuses = page.evaluate("""async ([text, realm, other, tag]) => {
          const replies = (""" + REVIVE + """)(text);
          const out = [];
          for (const [i, reply] of replies.entries()) {
            window.respond = (e) => { try { e.ports[0].postMessage(reply); } catch (err) {} };
            const base = i % 2 ? other : realm;
            out.push(await fetch(`${base}img/fuzz-reply-${tag}-${i}`, {cache: 'no-store'})
              .then((r) => r.status, () => 'error'));
          }
          return out; }""", [as_json(batch), servers.realm, servers.other, f"{run_id}-{COUNTS['inputs']}"])
        COUNTS["inputs"] += len(batch)
        assert all(s in (200, 401) for s in statuses), statuses
        assert [e for e in servers.other_log.entries if e["auth"] is not None] == []
        assert page_errors == []
    # The worker still serves a page with the runtime correctly.
    open_app(page, servers)
    still_correct(page, servers, f"replies-{run_id}", page_errors)
    print("fuzz replies:", COUNTS)
