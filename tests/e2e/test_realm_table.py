"""Issue 9 items 1-2: the shared realm table (tests/realm_cases.json) in real Chromium. Every
accepted spelling is stored under its canonical (WHATWG) form, matched by prefix in the runtime,
the loader and the worker; every rejected one makes setToken fail with a one-line error naming
it; no must-not-match URL ever receives ``Authorization``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from playwright.sync_api import Page
from support import LOOPBACK_URL, STORAGE_KEY, Servers, auth_seen, wait_controlled, wait_ready

TABLE = json.loads((Path(__file__).parents[1] / "realm_cases.json").read_text())["cases"]
SET = "([r, t]) => pyauthWeb.setToken(r, t).then(() => null, (e) => e.message)"
GET = "(u) => pyauthWeb.getToken(u)"
HREF = "(u) => { try { return new URL(u).href; } catch { return null; } }"


def filler(servers: Servers, name: str) -> Any:
    port = str(urlsplit(servers.realm).port)
    return lambda text: text.replace("{PORT}", port).replace("{NAME}", name)


def test_the_runtime_follows_the_table(page: Page, servers: Servers, run_id: str) -> None:
    fill = filler(servers, f"rt-{run_id}")
    page.goto(f"{servers.host}/t/app.html")
    wait_ready(page)
    token = servers.token()
    for case in TABLE:
        text, expected = fill(case["input"]), fill(case["canonical"])
        message = page.evaluate(SET, [text, token])
        if expected == "reject":
            assert message and "\n" not in message and text in message, (case["name"], message)
            assert page.evaluate("() => pyauthWeb.state()")["tokens"] == [], case["name"]
            continue
        assert message is None, (case["name"], message)
        assert page.evaluate(HREF, text) == expected, case["name"]  # the browser's own form
        stored = [t["realmURL"] for t in page.evaluate("() => pyauthWeb.state()")["tokens"]]
        assert stored == [expected], (case["name"], stored)
        assert json.loads(page.evaluate("(k) => localStorage.getItem(k)", STORAGE_KEY)) == {
            expected: token
        }
        for url in case.get("match", []):
            assert page.evaluate(GET, fill(url)) == token, (case["name"], url)
        for url in case.get("no_match", []):
            assert page.evaluate(GET, fill(url)) is None, (case["name"], url)
        page.evaluate("() => pyauthWeb.clearTokens()")


def logged_auth(servers: Servers, url: str) -> list[str | None]:
    return auth_seen(servers.realm_log, unquote(urlsplit(url).path))


def test_images_load_under_every_accepted_spelling(
    page: Page, servers: Servers, run_id: str, page_errors: list[str]
) -> None:
    page.goto(f"{servers.host}/t/app.html")  # first visit: installs the worker
    wait_ready(page)
    wait_controlled(page)
    loads = [c for c in TABLE if c.get("load")]
    assert len(loads) >= 4
    token = servers.token()
    for round_, how in enumerate(("stored by the host", "setToken")):
        fill = filler(servers, f"{round_}-{run_id}")
        spelled = {fill(c["input"]): token for c in loads}  # as the host wrote them
        match = [fill(u) for c in loads for u in c["match"]]
        no_match = [fill(u) for c in loads for u in c["no_match"]]
        if how == "stored by the host":  # read by the loader (first paint) and the runtime
            page.evaluate(
                "([k, v]) => localStorage.setItem(k, v)", [STORAGE_KEY, json.dumps(spelled)]
            )
        page.goto(f"{servers.host}/t/realm-images.html#" + quote(json.dumps(match + no_match)))
        wait_ready(page)
        if how == "setToken":
            for realm in spelled:
                assert page.evaluate(SET, [realm, token]) is None
            page.evaluate(
                """(urls) => { window.__images = urls.map((u) => {
              const img = new Image(); img.src = u; document.body.append(img); return img; }); }""",
                match + no_match,
            )
        page.wait_for_function("() => window.__images.every((i) => i.complete)", timeout=15_000)
        loaded = page.evaluate("() => window.__images.map((i) => i.naturalWidth > 0)")
        assert loaded == [True] * len(match) + [False] * len(no_match), (how, loaded)
        for url in match:
            assert logged_auth(servers, url) == [f"Bearer {token}"], (how, url)
        for url in no_match:
            seen = logged_auth(servers, url)
            assert seen and all(auth is None for auth in seen), (how, url, seen)
        stored = sorted(t["realmURL"] for t in page.evaluate("() => pyauthWeb.state()")["tokens"])
        assert stored == sorted(fill(c["canonical"]) for c in loads), how
        page.evaluate("() => pyauthWeb.clearTokens()")
    assert page_errors == []


def groups_without_overlap(cases: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Cases that can hold tokens at once: no case's realm is a prefix of another's URLs."""
    groups: list[list[dict[str, Any]]] = []
    for case in cases:
        for group in groups:
            others = [*group, case]
            if not any(
                u.startswith(a["canonical"])
                for a in others
                for b in others
                if a is not b
                for u in b["match"] + b["no_match"]
            ):
                group.append(case)
                break
        else:
            groups.append([case])
    return groups


def test_the_worker_and_the_loader_follow_the_whole_table(
    page: Page, servers: Servers, run_id: str, page_errors: list[str]
) -> None:
    """Every accepted case of the table, its hosts answered inside Chromium (context.route: the
    worker's requests are routed too): at first paint (the loader answers the worker from the
    host's storage while the runtime boots) and after setToken (the worker's own copy), each
    must-match URL gets the token, each must-not-match URL none."""
    fill = filler(servers, f"all-{run_id}")
    cases = [
        {**c, "match": [fill(u) for u in c["match"]], "no_match": [fill(u) for u in c["no_match"]]}
        for c in TABLE
        if c["canonical"] != "reject" and not c.get("load")
    ]
    assert len(cases) >= 15
    seen: dict[str, list[str | None]] = {}

    def answer(route: Any) -> None:
        request = route.request
        if request.method != "OPTIONS":  # (Playwright answers CORS preflights itself)
            seen.setdefault(request.url, []).append(request.all_headers().get("authorization"))
        route.fulfill(
            status=200,
            content_type="image/svg+xml",
            body='<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"/>',
            headers={"Access-Control-Allow-Origin": "*", "Cache-Control": "no-store"},
        )

    def foreign(url: str) -> bool:
        return not LOOPBACK_URL.match(url)

    page.context.answered_here.append(foreign)  # type: ignore[attr-defined]
    page.context.route(foreign, answer)
    page.goto(f"{servers.host}/t/app.html")  # first visit: installs the worker
    wait_ready(page)
    wait_controlled(page)
    token = servers.token()
    groups = groups_without_overlap(cases)
    for number, group in enumerate(groups):
        spelled = {fill(c["input"]): token for c in group}
        for how in ("stored by the host", "setToken"):
            # a query of its own per page (Chromium's memory cache would answer a URL again)
            tag = f"{'host' if how.startswith('stored') else 'set'}{number}"
            urls = {
                u: f"{u}{'&' if '?' in u else '?'}{tag}"
                for c in group
                for u in c["match"] + c["no_match"]
            }
            seen.clear()
            if how == "stored by the host":
                page.evaluate(
                    "([k, v]) => localStorage.setItem(k, v)", [STORAGE_KEY, json.dumps(spelled)]
                )
            page.goto(  # a new document each time (not a same-document fragment change)
                f"{servers.host}/t/realm-images.html?{tag}#" + quote(json.dumps([*urls.values()]))
            )
            wait_ready(page)
            if how == "setToken":
                for realm in spelled:
                    assert page.evaluate(SET, [realm, token]) is None, realm
                page.evaluate(
                    """(urls) => { window.__images = urls.map((u) => {
                      const img = new Image(); img.src = u + '&again'; document.body.append(img);
                      return img;
                    }); }""",
                    [*urls.values()],
                )
            page.wait_for_function("() => window.__images.every((i) => i.complete)", timeout=15_000)
            for case in group:
                for url in case["match"]:
                    got = seen.get(urls[url] + ("&again" if how == "setToken" else ""))
                    assert got and all(a == f"Bearer {token}" for a in got), (
                        how,
                        case["name"],
                        url,
                        got,
                    )
                for url in case["no_match"]:
                    got = seen.get(urls[url] + ("&again" if how == "setToken" else ""))
                    assert got and all(a is None for a in got), (how, case["name"], url, got)
            page.evaluate("() => pyauthWeb.clearTokens()")
    assert len(groups) < len(cases)  # (grouping worked: fewer page loads than cases)
    assert page_errors == []


LOADER_ANSWERS = """async ([page, urls]) => {
  // Inside the worker: its own askClient() to the loader-only page, once per URL: 'pending'
  // (the loader holds a realm token for it and waits for the runtime) or 'none' (not a realm).
  const client = (await clients.matchAll({ type: 'window' })).find((c) => c.url.startsWith(page));
  if (!client) throw new Error('the loader-only page is not a client of the worker');
  const out = [];
  for (const url of urls) {
    out.push(await new Promise((resolve) => {
      askClient(client, url, (reply) => typeof reply.app === 'string', () => resolve('pending'))
        .then((reply) => resolve(typeof reply.token === 'string' ? 'token' : 'none'));
    }));
  }
  return out;
}"""


def test_the_loader_answers_by_the_whole_table(
    page: Page, servers: Servers, run_id: str, page_errors: list[str]
) -> None:
    """The loader's own matching (before the runtime runs, it tells the worker which requests
    to hold): every accepted spelling the host stored, each must-match URL held ('pending'),
    each must-not-match URL let go. (In the image test the worker's coalesced asks can hide a
    wrong answer of the loader; here each URL is asked on its own.)"""
    fill = filler(servers, f"loader-{run_id}")
    cases = [
        {**c, "match": [fill(u) for u in c["match"]], "no_match": [fill(u) for u in c["no_match"]]}
        for c in TABLE
        if c["canonical"] != "reject"
    ]
    page.goto(f"{servers.host}/t/app.html")  # first visit: installs the worker
    wait_ready(page)
    wait_controlled(page)
    page.goto(f"{servers.host}/t/loader-only.html")
    wait_controlled(page)
    page.wait_for_function("() => !!window.pyauthWeb")
    worker = page.context.service_workers[0]
    token = servers.token()
    for group in groups_without_overlap(cases):
        spelled = {fill(c["input"]): token for c in group}
        page.evaluate("([k, v]) => localStorage.setItem(k, v)", [STORAGE_KEY, json.dumps(spelled)])
        for case in group:
            urls = case["match"] + case["no_match"]
            answers = worker.evaluate(LOADER_ANSWERS, [f"{servers.host}/t/loader-only.html", urls])
            expected = ["pending"] * len(case["match"]) + ["none"] * len(case["no_match"])
            assert answers == expected, (case["name"], urls, answers)
    assert page_errors == []
