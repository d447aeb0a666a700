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
from support import STORAGE_KEY, Servers, auth_seen, wait_controlled, wait_ready

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
            page.evaluate("([k, v]) => localStorage.setItem(k, v)", [STORAGE_KEY, json.dumps(spelled)])
        page.goto(f"{servers.host}/t/realm-images.html#" + quote(json.dumps(match + no_match)))
        wait_ready(page)
        if how == "setToken":
            for realm in spelled:
                assert page.evaluate(SET, [realm, token]) is None
            page.evaluate("""(urls) => { window.__images = urls.map((u) => {
              const img = new Image(); img.src = u; document.body.append(img); return img; }); }""",
                          match + no_match)
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
