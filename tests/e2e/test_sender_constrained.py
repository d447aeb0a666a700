"""Issue 13: DPoP (RFC 9449) against real parts. The real OpenID Provider (`oidc-provider`,
DPoP built in; one run with nonces required) issues DPoP-bound access tokens (``cnf.jkt``) and
refresh tokens to a sign-in whose code exchange carries ``pyauthWeb.dpopProof``; a resource
server verifies every proof fully with PyJWT, ``cryptography`` and joserfc (``dpop_realm.py``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from dpop_realm import DPoPLog, dpop_realm_app, hs256_tokens, provider_tokens
from joserfc.jwk import ECKey
from oidc_op import CLIENT_ID, Provider, authorize, running_provider
from playwright.sync_api import BrowserContext, Page
from support import STORAGE_KEY, Servers, open_app, stop_service_worker, wait_ready, wait_until

from pyauth_web import dpop
from pyauth_web.demo.servers import DEMO_SECRET

TTL = 20


class Realm:
    def __init__(self, url: str, log: DPoPLog) -> None:
        self.url = url
        self.log = log

    def valid(self, path: str) -> list[dict[str, Any]]:
        return [e for e in self.log.for_path(path) if e["valid"]]


@pytest.fixture(scope="module", params=["plain", "nonce"])
def setup(request: pytest.FixtureRequest, servers: Servers) -> Iterator[tuple[Provider, Realm, bool]]:
    """The provider and a resource server for it; ``nonce``: both demand DPoP nonces."""
    nonce = request.param == "nonce"
    log = DPoPLog()
    verify: dict[str, Callable[[str], dict[str, Any]]] = {}
    app = dpop_realm_app(lambda token: verify["token"](token), log, require_nonce=nonce)
    realm = servers.thread.serve(app) + "/"
    with running_provider(f"{servers.host}/t/callback.html", realm, TTL, nonce=nonce) as op:
        verify["token"] = provider_tokens(op.issuer, realm)
        yield op, Realm(realm, log), nonce


EXCHANGE = """async ([tokenURL, form]) => {
  // The host's code exchange, bound to the app's key: the proof from pyauthWeb.dpopProof, and
  // once more with the provider's nonce when it asks for one (RFC 9449 §8).
  let nonce;
  for (let i = 0; i < 2; i++) {
    const proof = await pyauthWeb.dpopProof('POST', tokenURL, nonce ? { nonce } : {});
    const resp = await fetch(tokenURL, { method: 'POST', body: new URLSearchParams(form),
      headers: { DPoP: proof, 'Content-Type': 'application/x-www-form-urlencoded' } });
    const body = await resp.json();
    if (resp.status === 400 && body.error === 'use_dpop_nonce') { nonce = resp.headers.get('DPoP-Nonce'); continue; }
    return { status: resp.status, body, tries: i + 1 };
  }
}"""


def sign_in_with_dpop(page: Page, new_page: Any, op: Provider, servers: Servers, realm: Realm) -> dict[str, Any]:
    redirect = f"{servers.host}/t/callback.html"
    code, verifier = authorize(new_page(external="block"), op, redirect, realm.url)
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect,
            "client_id": CLIENT_ID, "code_verifier": verifier, "resource": realm.url}
    result = page.evaluate(EXCHANGE, [f"{op.issuer}/token", form])
    assert result["status"] == 200, result
    tokens = result["body"]
    assert tokens["token_type"] == "DPoP" and tokens["refresh_token"]
    return tokens


def open_signed_in(new_page: Any, op: Provider, servers: Servers, realm: Realm, *, skew: float = 5) -> tuple[Page, dict[str, Any]]:
    page = new_page()
    page.goto(servers.host + "/t/app.html")
    wait_ready(page)
    page.evaluate("([endpoint, clientId, skew]) => pyauthWeb.configure({oauth: {tokenEndpoint: endpoint, clientId}, skew, jitter: 0})",
                  [f"{op.issuer}/token", CLIENT_ID, skew])
    tokens = sign_in_with_dpop(page, new_page, op, servers, realm)
    page.evaluate("([r, t, rt]) => pyauthWeb.setToken(r, t, rt)", [realm.url, tokens["access_token"], tokens["refresh_token"]])
    return page, tokens


def thumbprint_of(proof: str) -> str:
    return str(ECKey.import_key(jwt.get_unverified_header(proof)["jwk"]).thumbprint())


def load_images(page: Page, urls: list[str]) -> list[int]:
    return list(page.evaluate("""(urls) => Promise.all(urls.map((u) => new Promise((resolve) => {
        const img = new Image(); img.onload = () => resolve(img.naturalWidth); img.onerror = () => resolve(0);
        img.src = u; document.body.appendChild(img); })))""", urls))


def test_images_fetch_sse_and_refresh_carry_proofs_bound_to_one_key(
    new_page: Any, setup: tuple[Provider, Realm, bool], servers: Servers
) -> None:
    op, realm, nonce = setup
    since = time.time()
    page, tokens = open_signed_in(new_page, op, servers, realm)
    jkt = jwt.decode(tokens["access_token"], options={"verify_signature": False})["cnf"]["jkt"]

    # <img> through the worker: each request a new proof, verified in full by the server.
    paths = [f"/img/{uuid.uuid4().hex[:8]}" for _ in range(5)]
    assert load_images(page, [realm.url.rstrip("/") + p for p in paths]) == [40] * 5
    for path in paths:
        assert len(realm.valid(path)) == 1, realm.log.for_path(path)
    proofs = [realm.valid(p)[0]["proof"] for p in paths]
    assert len(set(proofs)) == 5 and {thumbprint_of(p) for p in proofs} == {jkt}

    # pyauthWeb.fetch, Python fetch, and an SSE connect.
    status = page.evaluate("(u) => pyauthWeb.fetch(u).then((r) => r.status)", realm.url + "api/js")
    assert status == 200 and len(realm.valid("/api/js")) == 1
    page.evaluate("""(u) => pyauthWeb.pyodide.runPythonAsync(`
        import pyauth_web.browser.fetch as f
        r = await f.fetch('${u}')
        r.status`)""", realm.url + "api/py")
    assert len(realm.valid("/api/py")) == 1
    page.evaluate("""(u) => new Promise((resolve) => { const got = [];
        const s = pyauthWeb.stream(u, { onEvent: (e) => { got.push(e.data); if (got.length === 2) { s.close(); resolve(got); } } }); })""",
                  realm.url + "sse/ticker?count=2")
    assert len(realm.valid("/sse/ticker")) == 1
    # WebSocket: no headers at the handshake, so the proof goes in the first message.
    ws_url = "ws" + realm.url.removeprefix("http") + "ws"
    page.evaluate("""(u) => new Promise(async (resolve) => {
        const s = await pyauthWeb.socket(u, { onMessage: (m) => { if (String(m).includes('ok')) { s.close(); resolve(); } } }); })""", ws_url)
    assert len(realm.valid("/ws")) == 1, realm.log.for_path("/ws")

    # A proof names one URL: a request carrying one never follows a redirect.
    redirected = page.evaluate("(u) => pyauthWeb.fetch(u).then((r) => 'followed ' + r.status, (e) => 'rejected')", realm.url + "go?to=/api/elsewhere")
    assert redirected == "rejected" and realm.log.for_path("/api/elsewhere") == []
    assert [e["valid"] for e in realm.log.for_path("/go")][-1] is True

    # Nonces: one refusal per origin and client (the worker, this tab), not one per request.
    refusals = [e for e in realm.log.entries if e["reason"] == "nonce required"]
    assert len(refusals) == (2 if nonce else 0), [(e["path"], e["reason"]) for e in realm.log.entries]

    # The refresh-token grant carries a proof of the same key: the provider issues a new bound
    # token (it refuses a refresh of a DPoP-bound grant without one).
    assert op.wait_for("grant.success", 2, since, timeout=TTL + 10)  # code, then the refresh
    grants = op.grants("grant.success", since)
    assert [g["grant_type"] for g in grants[:2]] == ["authorization_code", "refresh_token"]
    errors = op.grants("grant.error", since)
    assert all(e["error"] == "use_dpop_nonce" for e in errors)  # only nonce refusals, if any
    if not nonce:
        assert errors == []
    wait_until(lambda: page.evaluate("(u) => pyauthWeb.getToken(u)", realm.url) != tokens["access_token"], 10, "the refreshed token")
    fresh = page.evaluate("(u) => pyauthWeb.getToken(u)", realm.url)
    assert jwt.decode(fresh, options={"verify_signature": False})["cnf"]["jkt"] == jkt
    assert load_images(page, [realm.url + "img/after-refresh"]) == [40]
    assert page.evaluate("() => window.__authErrors") == []
    print(f"dpop ({'nonce' if nonce else 'plain'}): {len(realm.log.entries)} realm requests, {len(refusals)} nonce refusals")


def test_a_token_taken_from_storage_is_useless_elsewhere(
    new_page: Any, setup: tuple[Provider, Realm, bool], servers: Servers
) -> None:
    op, realm, nonce = setup
    page, tokens = open_signed_in(new_page, op, servers, realm, skew=0)
    assert load_images(page, [realm.url + "img/ok"]) == [40]
    stolen = json.loads(page.evaluate("(k) => localStorage.getItem(k)", STORAGE_KEY))[realm.url]
    good_proof = realm.valid("/img/ok")[0]["proof"]

    def status(headers: dict[str, str], path: str = "img/ok") -> int:
        req = urllib.request.Request(realm.url + path, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as err:
            server_nonce[0] = err.headers.get("DPoP-Nonce")
            return int(err.code)

    server_nonce: list[str | None] = [None]

    # As a Bearer token: refused.
    assert status({"Authorization": f"Bearer {stolen}"}) == 401
    # With a proof the thief signs with his own key, correct in every other way: refused.
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    ath = base64.urlsafe_b64encode(hashlib.sha256(stolen.encode()).digest()).rstrip(b"=").decode()

    def own_proof() -> str:
        claims = {"jti": uuid.uuid4().hex, "htm": "GET", "htu": realm.url + "img/ok", "iat": int(time.time()), "ath": ath}
        if server_nonce[0]:
            claims["nonce"] = server_nonce[0]
        return jwt.encode(claims, key, algorithm="ES256", headers={"typ": "dpop+jwt", "jwk": jwk})

    if nonce:  # a nonce is no secret: the thief does the dance and has the server's current one
        assert status({"Authorization": f"DPoP {stolen}", "DPoP": own_proof()}) == 401
        assert server_nonce[0]
    own = own_proof()
    assert status({"Authorization": f"DPoP {stolen}", "DPoP": own}) == 401
    assert realm.log.entries[-1]["reason"] == "the proof key is not the key the token is bound to"
    # Replaying the page's own proof: refused (jti seen; or the nonce is stale).
    assert status({"Authorization": f"DPoP {stolen}", "DPoP": good_proof}) == 401
    assert realm.log.entries[-1]["reason"] in ("proof replayed (jti seen)", "nonce required")
    assert tokens["access_token"] == stolen
    # And the key cannot be taken along: the stored private key is not extractable.
    assert page.evaluate(EXPORT_KEYS, [dpop.KEY_DB, dpop.KEY_STORE]) == [[False, "InvalidAccessError"]]


EXPORT_KEYS = """([name, store]) => new Promise((resolve, reject) => {
  const open = indexedDB.open(name);
  open.onerror = () => reject(open.error);
  open.onsuccess = () => {
    const all = open.result.transaction(store).objectStore(store).getAll();
    all.onsuccess = async () => {
      const out = [];
      for (const record of all.result) {
        let exported = 'exported';
        try { await crypto.subtle.exportKey('pkcs8', record.privateKey); } catch (e) { exported = e.name; }
        out.push([record.privateKey.extractable, exported]);
      }
      open.result.close();
      resolve(out);
    };
  };
})"""


def test_five_tabs_share_one_key_and_refresh_once(
    new_page: Any, setup: tuple[Provider, Realm, bool], servers: Servers
) -> None:
    op, realm, _ = setup
    first, tokens = open_signed_in(new_page, op, servers, realm, skew=8)
    tabs = [first]
    for _ in range(4):
        tab = new_page()
        tab.goto(servers.host + "/t/app.html")
        wait_ready(tab)
        tab.evaluate("([endpoint, clientId]) => pyauthWeb.configure({oauth: {tokenEndpoint: endpoint, clientId}, skew: 8, jitter: 0})",
                     [f"{op.issuer}/token", CLIENT_ID])
        tabs.append(tab)
    since = time.time()
    # Each tab signs with the app's one key (IndexedDB): the same thumbprint everywhere.
    thumbprints = {thumbprint_of(tab.evaluate("(u) => pyauthWeb.dpopProof('GET', u)", realm.url)) for tab in tabs}
    assert thumbprints == {jwt.decode(tokens["access_token"], options={"verify_signature": False})["cnf"]["jkt"]}
    assert op.wait_for("grant.success", 1, since, timeout=TTL)
    first.wait_for_timeout(2000)  # every tab has passed the same expiry by now
    refreshes = [g for g in op.grants("grant.success", since) if g["grant_type"] == "refresh_token"]
    assert len(refreshes) == 1, op.events
    assert [e for e in op.grants("grant.error", since) if e["error"] != "use_dpop_nonce"] == []
    for tab in tabs:
        assert tab.evaluate("() => window.__authErrors") == []


def test_logout_deletes_the_key_and_a_lost_key_is_one_auth_error(
    context: BrowserContext, new_page: Any, setup: tuple[Provider, Realm, bool], servers: Servers
) -> None:
    op, realm, _ = setup
    page, tokens = open_signed_in(new_page, op, servers, realm, skew=0)
    other = new_page()
    other.goto(servers.host + "/t/app.html")
    wait_ready(other)
    count_keys = "() => new Promise((resolve) => { const r = indexedDB.open('pyauth-web-dpop', 1); r.onsuccess = () => { const q = r.result.transaction('keys').objectStore('keys').count(); q.onsuccess = () => { r.result.close(); resolve(q.result); }; }; })"
    assert page.evaluate(count_keys) == 1
    # The key is lost (storage wiped behind the runtime's back) while the session stays.
    page.evaluate("() => new Promise((resolve) => { const r = indexedDB.open('pyauth-web-dpop', 1); r.onsuccess = () => { const q = r.result.transaction('keys', 'readwrite').objectStore('keys').clear(); q.onsuccess = () => { r.result.close(); resolve(); }; }; })")
    page.evaluate("() => pyauthWeb.reload()")
    stop_service_worker(context, page)  # a worker that starts now has no key in memory either
    before = len(realm.log.entries)
    # Images: the worker finds no key and asks the page, which checks and reports it once.
    assert load_images(page, [realm.url + "img/lost-a", realm.url + "img/lost-b"]) == [0, 0]
    errors = page.evaluate("() => window.__authErrors")
    assert len(errors) == 1 and errors[0]["reason"] == "dpop key lost", errors
    statuses = [page.evaluate("(u) => pyauthWeb.fetch(u).then((r) => r.status)", realm.url + f"api/lost{i}") for i in range(3)]
    assert statuses == [401] * 3
    assert len(page.evaluate("() => window.__authErrors")) == 1  # one episode
    sent = realm.log.entries[before:]
    assert len(sent) == 5 and all(e["auth"] is None for e in sent)  # no token without its proof, no loop
    # Logout deletes the key in every tab's database (one database per origin).
    page.evaluate("() => pyauthWeb.clearTokens()")
    assert other.evaluate(count_keys) == 0
    assert tokens["access_token"] not in json.dumps(page.evaluate("() => ({...localStorage})"))


def test_the_worker_never_downgrades_a_bound_token_to_bearer(
    page: Page, servers: Servers, run_id: str
) -> None:
    """A tab that does not know a token is bound (an opaque token without `configure({dpop})`,
    or an older page) syncs it to the worker as a plain one: the worker keeps sending it with a
    proof, never as Bearer. (Tokens here are the test issuer's HS256 JWTs; the server checks
    the proof in full all the same.)"""
    log = DPoPLog()
    realm = servers.thread.serve(dpop_realm_app(hs256_tokens(DEMO_SECRET), log)) + "/"
    open_app(page, servers)
    proof = page.evaluate("(u) => pyauthWeb.dpopProof('GET', u)", realm)
    bound = jwt.encode({"exp": int(time.time()) + 600, "cnf": {"jkt": thumbprint_of(proof)}},
                       DEMO_SECRET, algorithm="HS256")
    page.evaluate("([r, t]) => pyauthWeb.setToken(r, t)", [realm, bound])
    assert load_images(page, [f"{realm}img/first-{run_id}"]) == [40]
    # What a tab that does not know the token is bound would send: the same token, no `dpop`.
    page.evaluate("""async ([app, realm, token]) => {
      const reg = await navigator.serviceWorker.ready;
      await new Promise((resolve) => {
        navigator.serviceWorker.addEventListener('message', function on(e) {
          if (e.data && e.data.ack === 'downgrade') { navigator.serviceWorker.removeEventListener('message', on); resolve(); }
        });
        reg.active.postMessage({ type: 'sync-tokens', app, tokens: { [realm]: token }, expires: {},
          redirects: {}, realms: [realm], skew: 60, ack: 'downgrade' });
      }); }""", [STORAGE_KEY, realm, bound])
    assert load_images(page, [f"{realm}img/after-{run_id}"]) == [40]
    sent = log.for_path(f"/img/after-{run_id}")
    assert [e["auth"].split(" ")[0] for e in sent] == ["DPoP"] and sent[0]["valid"], sent
