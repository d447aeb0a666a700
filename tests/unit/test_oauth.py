"""OAuth refresh_token grant: request building, response parsing, refresh-token rotation."""

from __future__ import annotations

import asyncio
import json
import random
from urllib.parse import parse_qs

import pytest

from pyauth_web.oauth import (
    FORM_CONTENT_TYPE,
    Exchange,
    RefreshTokenGrant,
    RefreshTokenMap,
    RefreshTokenRotation,
    TokenResponse,
    build_refresh_request,
    parse_token_response,
)
from pyauth_web.refresh import INVALID_GRANT, Reason, RefreshCoordinator, RefreshError

ENDPOINT = "https://auth.example/oauth/token"
REALM = "https://api.example/"


# -- build_refresh_request ------------------------------------------------------------------
def test_build_refresh_request() -> None:
    url, headers, body = build_refresh_request(ENDPOINT, "web-app", "rt-1")
    assert url == ENDPOINT
    assert headers == {"Content-Type": FORM_CONTENT_TYPE, "Accept": "application/json"}
    assert "Authorization" not in headers  # public client: no secret
    assert parse_qs(body, strict_parsing=True) == {
        "grant_type": ["refresh_token"],
        "refresh_token": ["rt-1"],
        "client_id": ["web-app"],
    }


def test_build_refresh_request_with_scope_and_special_characters() -> None:
    req = build_refresh_request(ENDPOINT, "app id", "a+b/c=d&e", scope="openid profile")
    form = parse_qs(req.body, strict_parsing=True)
    assert form["refresh_token"] == ["a+b/c=d&e"]
    assert form["client_id"] == ["app id"]
    assert form["scope"] == ["openid profile"]
    assert "scope=openid+profile" in req.body  # form encoding: space is '+'


def test_build_refresh_request_normalizes_the_endpoint() -> None:
    url, _, _ = build_refresh_request("HTTPS://Auth.Example:443/token?x=1", "c", "r")
    assert url == "https://auth.example/token?x=1"
    assert build_refresh_request("http://localhost:8080/token", "c", "r").url.startswith("http:")
    assert build_refresh_request("http://127.0.0.1/token", "c", "r").url.startswith("http:")


@pytest.mark.parametrize(
    ("endpoint", "client_id", "refresh_token"),
    [
        ("http://auth.example/token", "c", "r"),  # plain http off loopback
        ("/token", "c", "r"),
        ("ftp://auth.example/token", "c", "r"),
        ("https://auth.example/token#frag", "c", "r"),
        (ENDPOINT, "", "r"),
        (ENDPOINT, "c", ""),
    ],
)
def test_build_refresh_request_rejects(endpoint: str, client_id: str, refresh_token: str) -> None:
    with pytest.raises(ValueError):
        build_refresh_request(endpoint, client_id, refresh_token)


# -- parse_token_response -------------------------------------------------------------------
def ok(**fields: object) -> str:
    return json.dumps({"access_token": "at", "token_type": "Bearer", **fields})


def error_of(status: int, body: str) -> RefreshError:
    with pytest.raises(RefreshError) as info:
        parse_token_response(status, body, realm=REALM)
    assert info.value.realm == REALM and info.value.status == status
    return info.value


def test_parse_full_response() -> None:
    body = ok(refresh_token="rt-2", expires_in=3600, scope="openid")
    assert parse_token_response(200, body) == TokenResponse("at", "rt-2", 3600.0, "Bearer")


def test_parse_minimal_response() -> None:
    assert parse_token_response(200, ok()) == TokenResponse("at", None, None, "Bearer")
    assert parse_token_response(200, ok(expires_in="60")).expires_in == 60.0


@pytest.mark.parametrize(
    ("body", "what"),
    [
        ("<html>oops</html>", "not a JSON object"),
        ("", "not a JSON object"),
        ("[]", "not a JSON object"),
        (json.dumps({"token_type": "Bearer"}), "missing access_token"),
        (json.dumps({"access_token": "", "token_type": "Bearer"}), "missing access_token"),
        (json.dumps({"access_token": "at"}), "missing token_type"),
        (ok(refresh_token=7), "refresh_token"),
        (ok(refresh_token=""), "refresh_token"),
        (ok(expires_in=-1), "expires_in"),
        (ok(expires_in="soon"), "expires_in"),
        (ok(expires_in=True), "expires_in"),
        (ok(expires_in="inf"), "expires_in"),
    ],
)
def test_malformed_success_is_final(body: str, what: str) -> None:
    err = error_of(200, body)
    assert err.reason.startswith("malformed token response") and what in err.reason
    assert not err.retryable


def test_invalid_grant_is_final_with_description() -> None:
    body = json.dumps({"error": "invalid_grant", "error_description": "token reused"})
    err = error_of(400, body)
    assert (err.reason, err.retryable, err.description) == (INVALID_GRANT, False, "token reused")
    assert err.invalid_grant


@pytest.mark.parametrize(
    ("status", "body", "reason", "retryable"),
    [
        (401, json.dumps({"error": "invalid_client"}), "invalid_client", False),
        (403, "Forbidden", "http 403", False),
        (400, json.dumps({"error": "invalid_scope"}), "invalid_scope", False),
        (404, "", "http 404", False),
        (429, json.dumps({"error": "slow_down"}), "slow_down", True),
        (500, json.dumps({"error": "server_error"}), "server_error", True),
        (502, "<html>Bad Gateway</html>", "http 502", True),
        (503, "{not json", "http 503", True),
        (400, json.dumps({"error": 42}), "http 400", False),
        (302, "", "http 302", False),
    ],
)
def test_error_responses(status: int, body: str, reason: str, retryable: bool) -> None:
    err = error_of(status, body)
    assert (err.reason, err.retryable) == (reason, retryable)


# -- RefreshTokenRotation -------------------------------------------------------------------
def test_rotation_hands_each_token_out_once() -> None:
    holder = RefreshTokenRotation("rt-1", realm=REALM)
    assert holder.available
    assert holder.take() == "rt-1"
    assert not holder.available
    with pytest.raises(RefreshError) as info:
        holder.take()
    assert (info.value.reason, info.value.retryable, info.value.realm) == (
        Reason.REFRESH_TOKEN_USED,
        False,
        REALM,
    )
    holder.accept(TokenResponse("at", "rt-2", 60.0, "Bearer"))
    assert holder.take() == "rt-2"


def test_rotation_refuses_a_used_token_even_when_set_again() -> None:
    holder = RefreshTokenRotation("rt-1")
    holder.take()
    holder.set("rt-1")
    with pytest.raises(RefreshError):
        holder.take()
    holder.accept(TokenResponse("at", "rt-1", None, "Bearer"))  # a server replaying it
    with pytest.raises(RefreshError):
        holder.take()


def test_non_rotating_server_rearms_the_token() -> None:
    holder = RefreshTokenRotation("rt-1")
    holder.take()
    holder.accept(TokenResponse("at", None, 60.0, "Bearer"))
    assert holder.take() == "rt-1"


def test_release_only_rearms_the_current_token() -> None:
    holder = RefreshTokenRotation("rt-1")
    token = holder.take()
    holder.release(token)  # e.g. a 429: the server did not use it
    assert holder.take() == "rt-1"
    holder.accept(TokenResponse("at", "rt-2", None, "Bearer"))
    holder.release("rt-1")  # stale release: ignored
    holder.take()
    holder.set("rt-1")
    with pytest.raises(RefreshError):
        holder.take()


def test_no_token_and_clear() -> None:
    holder = RefreshTokenRotation()
    with pytest.raises(RefreshError) as info:
        holder.take()
    assert info.value.reason == Reason.NO_REFRESH_TOKEN
    holder.set("rt-1")
    holder.clear()
    assert not holder.available
    with pytest.raises(ValueError):
        holder.set("")


def test_a_token_whose_request_got_no_answer_is_refused_with_that_reason() -> None:
    holder = RefreshTokenRotation("rt-1", realm=REALM)
    token = holder.take()
    holder.lost(token, Reason.REFRESH_TIMED_OUT)  # the server may have rotated it
    holder.release("rt-0")  # not current: ignored
    with pytest.raises(RefreshError) as info:
        holder.take()
    assert (info.value.reason, info.value.retryable, info.value.description) == (
        Reason.REFRESH_TIMED_OUT,
        False,
        RefreshTokenRotation.NOT_RESENT,
    )
    holder.lost("rt-never-sent", Reason.NETWORK_ERROR)  # never taken: nothing to remember
    holder.set("rt-never-sent")
    assert holder.take() == "rt-never-sent"


# -- together: coordinator + oauth + rotation against a fake rotating server ------------------
class RotatingServer:
    """A token endpoint that rotates refresh tokens and treats a reused one as invalid_grant."""

    def __init__(self) -> None:
        self.valid = "rt-0"
        self.seen: list[str] = []

    async def post(self, url: str, body: str) -> tuple[int, str]:
        await asyncio.sleep(0)
        token = parse_qs(body)["refresh_token"][0]
        self.seen.append(token)
        if token != self.valid:
            return 400, json.dumps({"error": "invalid_grant"})
        n = len(self.seen)
        self.valid = f"rt-{n}"
        return 200, ok(access_token=f"at-{n}", refresh_token=self.valid, expires_in=300)


def test_coordinator_with_rotation_sends_each_refresh_token_once() -> None:
    async def body() -> None:
        server = RotatingServer()
        holder = RefreshTokenRotation("rt-0", realm=REALM)

        async def refresher(realm: str) -> str:
            url, _, form = build_refresh_request(ENDPOINT, "web-app", holder.take())
            status, reply = await server.post(url, form)
            response = parse_token_response(status, reply, realm=realm)
            holder.accept(response)
            return response.access_token

        async def no_sleep(seconds: float) -> None:
            await asyncio.sleep(0)

        coord = RefreshCoordinator(refresher, sleep=no_sleep, rng=random.Random(0))
        first = await asyncio.gather(*(coord.refresh(REALM) for _ in range(100)))
        assert set(first) == {"at-1"}
        assert await coord.refresh(REALM) == "at-2"
        assert server.seen == ["rt-0", "rt-1"]  # no refresh token sent twice

    asyncio.run(body())


# -- RefreshTokenGrant: the rule the browser's OAuth refresher runs --------------------------------
class Tab:
    """One tab's refresher over shared storage, as pyauth_web.browser.refreshers runs it: the
    grant, the serialized map, and the session's access token, read at each step."""

    def __init__(self, storage: dict[str, str | None], server: RotatingServer) -> None:
        self.grant = RefreshTokenGrant(ENDPOINT, "web-app")
        self.storage = storage
        self.server = server

    def tokens(self) -> RefreshTokenMap:
        return RefreshTokenMap.loads(self.storage.get("refresh"))

    async def refresh(self, realm: str) -> str:
        exchange = self.grant.start(realm, self.tokens(), self.storage.get("session"))
        status, body = await self.server.post(exchange.request.url, exchange.request.body)
        tokens = self.tokens()
        access = self.grant.finish(exchange, status, body, tokens, self.storage.get("session"))
        self.storage["refresh"] = tokens.dumps()
        self.storage["session"] = access
        return access


def shared_session(refresh_token: str = "rt-0") -> dict[str, str | None]:
    tokens = RefreshTokenMap()
    tokens.set(REALM, refresh_token, "at-0")
    return {"refresh": tokens.dumps(), "session": "at-0"}


def test_grant_tabs_take_turns_with_the_newest_refresh_token() -> None:
    async def body() -> None:
        server, storage = RotatingServer(), shared_session()
        a, b = Tab(storage, server), Tab(storage, server)
        assert await a.refresh(REALM) == "at-1"
        assert await b.refresh(REALM) == "at-2"  # b finds the token a's refresh rotated
        assert await a.refresh(REALM) == "at-3"
        assert server.seen == ["rt-0", "rt-1", "rt-2"]  # none twice: no invalid_grant

    asyncio.run(body())


def test_grant_retries_a_token_the_server_did_not_use_and_never_a_lost_one() -> None:
    async def body() -> None:
        server, storage = RotatingServer(), shared_session()
        tab = Tab(storage, server)
        grant = tab.grant
        exchange = grant.start(REALM, tab.tokens(), "at-0")
        busy = json.dumps({"error": "temporarily_unavailable"})
        with pytest.raises(RefreshError) as info:
            grant.finish(exchange, 503, busy, tab.tokens(), "at-0")
        assert info.value.retryable
        assert await tab.refresh(REALM) == "at-1"  # rt-0 was released: sent again
        exchange = grant.start(REALM, tab.tokens(), "at-1")
        grant.lost(exchange, Reason.NETWORK_ERROR)  # the reply (maybe a rotation) was lost
        with pytest.raises(RefreshError) as info:
            grant.start(REALM, tab.tokens(), "at-1")
        assert (info.value.reason, info.value.retryable) == (Reason.NETWORK_ERROR, False)
        assert server.seen == ["rt-0"]

    asyncio.run(body())


def test_grant_refuses_a_token_after_invalid_grant_and_other_sessions() -> None:
    async def body() -> None:
        server, storage = RotatingServer(), shared_session("rt-stolen")
        tab = Tab(storage, server)
        with pytest.raises(RefreshError) as info:
            await tab.refresh(REALM)
        assert info.value.invalid_grant
        with pytest.raises(RefreshError) as info:
            await tab.refresh(REALM)  # never sent twice, whatever the server said
        assert info.value.reason == Reason.REFRESH_TOKEN_USED
        for session in ("at-bob", None):  # another user's session, or logged out
            with pytest.raises(RefreshError) as info:
                tab.grant.start(REALM, tab.tokens(), session)
            assert (info.value.reason, info.value.retryable) == (Reason.NO_REFRESH_TOKEN, False)
        assert server.seen == ["rt-stolen"]

    asyncio.run(body())


def test_grant_discards_a_reply_when_the_session_changed_meanwhile() -> None:
    server, storage = RotatingServer(), shared_session()
    tab = Tab(storage, server)
    exchange = tab.grant.start(REALM, tab.tokens(), "at-0")
    tokens = tab.tokens()
    reply = ok(access_token="at-1", refresh_token="rt-1")
    with pytest.raises(RefreshError) as info:
        tab.grant.finish(exchange, 200, reply, tokens, "at-bob")  # the host wrote bob's session
    assert info.value.reason == Reason.LOGGED_OUT
    assert tokens.dumps() == storage["refresh"]  # nothing rotated


def test_grant_with_a_server_that_does_not_rotate() -> None:
    tab = Tab(shared_session(), RotatingServer())
    for n in (1, 2):
        session = tab.storage["session"]
        exchange = tab.grant.start(REALM, tab.tokens(), session)
        assert exchange.refresh_token == "rt-0"
        tokens = tab.tokens()
        reply = ok(access_token=f"at-{n}")  # no refresh_token: keep using rt-0
        assert tab.grant.finish(exchange, 200, reply, tokens, session) == f"at-{n}"
        tab.storage.update(refresh=tokens.dumps(), session=f"at-{n}")
    assert tab.tokens().for_session(REALM, "at-2") == "rt-0"


def test_grant_checks_its_endpoint_and_client_id() -> None:
    with pytest.raises(ValueError, match="oauth.tokenEndpoint"):
        RefreshTokenGrant("http://auth.example/token", "c")
    with pytest.raises(ValueError, match="oauth.clientId"):
        RefreshTokenGrant(ENDPOINT, "")


def test_coordinator_with_the_grant_sends_each_refresh_token_once() -> None:
    async def body() -> None:
        server, storage = RotatingServer(), shared_session()
        tab = Tab(storage, server)

        async def no_sleep(seconds: float) -> None:
            await asyncio.sleep(0)

        coord = RefreshCoordinator(tab.refresh, sleep=no_sleep, rng=random.Random(0))
        first = await asyncio.gather(*(coord.refresh(REALM) for _ in range(100)))
        assert set(first) == {"at-1"}
        assert await coord.refresh(REALM) == "at-2"
        assert server.seen == ["rt-0", "rt-1"]

    asyncio.run(body())


def test_a_new_grant_keeps_the_spent_refresh_tokens_of_the_one_it_replaces() -> None:
    """configure({oauth}) again makes a new grant: a refresh token whose reply was lost stays
    unsendable (the server may have rotated it)."""
    server, storage = RotatingServer(), shared_session()
    tab = Tab(storage, server)
    exchange = tab.grant.start(REALM, tab.tokens(), "at-0")
    tab.grant.lost(exchange, Reason.REFRESH_TIMED_OUT)
    fresh = RefreshTokenGrant(tab.grant.token_endpoint, tab.grant.client_id)
    fresh.start(REALM, tab.tokens(), "at-0")  # alone, it would send rt-0 again
    replacement = RefreshTokenGrant(tab.grant.token_endpoint, tab.grant.client_id)
    replacement.carry_over(tab.grant)
    with pytest.raises(RefreshError) as info:
        replacement.start(REALM, tab.tokens(), "at-0")
    assert (info.value.reason, info.value.retryable) == (Reason.REFRESH_TIMED_OUT, False)


def test_refresh_tokens_are_kept_under_any_browser_canonical_realm() -> None:
    """Keys are written in the browser's canonical form; one the CPython rule would refuse to
    canonicalise itself (``^`` in the path) is still a valid key. Non-realm keys are dropped."""
    tokens = RefreshTokenMap()
    for realm in ("https://a.example/a^b/", "https://xn--bcher-kva.example/"):
        tokens.set(realm, "rt", "at")
    raw = tokens.dumps()
    assert raw is not None
    data = json.loads(raw)
    data["https://a.example/?q=1"] = data["https://a.example/a^b/"]  # not a realm: dropped
    again = RefreshTokenMap.loads(json.dumps(data))
    assert again.for_session("https://a.example/a^b/", "at") == "rt"
    assert again.for_session("https://xn--bcher-kva.example/", "at") == "rt"
    assert again.dropped == 1


NONCE_REFUSAL = '{"error": "use_dpop_nonce", "error_description": "nonce"}'


def _one_exchange() -> tuple[RefreshTokenGrant, RefreshTokenMap, Exchange]:
    grant = RefreshTokenGrant("https://op.example/token", "client")
    tokens = RefreshTokenMap()
    tokens.set("https://api.example/", "rt-1", "at-1")
    return grant, tokens, grant.start("https://api.example/", tokens, "at-1")


def test_a_dpop_nonce_refusal_resends_the_same_refresh_token_once() -> None:
    grant, _, exchange = _one_exchange()
    assert grant.retry_for_nonce(exchange, 400, NONCE_REFUSAL)  # not used by the server: resend
    assert not grant.retry_for_nonce(exchange, 400, NONCE_REFUSAL)  # never twice
    other = Exchange(exchange.realm, exchange.refresh_token, exchange.request)
    assert not grant.retry_for_nonce(other, 400, '{"error": "invalid_grant"}')  # a real refusal
    assert "refresh_token=rt-1" in exchange.request.body


def test_a_second_nonce_refusal_fails_the_attempt_but_leaves_the_refresh_token_usable() -> None:
    grant, tokens, exchange = _one_exchange()
    assert grant.retry_for_nonce(exchange, 400, NONCE_REFUSAL)
    with pytest.raises(RefreshError, match="use_dpop_nonce"):
        grant.finish(exchange, 400, NONCE_REFUSAL, tokens, "at-1")
    again = grant.start("https://api.example/", tokens, "at-1")  # not spent: the OP never used it
    assert again.refresh_token == "rt-1"


def test_a_refused_refresh_token_is_dropped_from_shared_storage() -> None:
    """After ``invalid_grant`` no tab presents the refused refresh token again; other errors
    (a server error, a DPoP nonce refusal, a bad client) leave it stored."""
    grant, tokens, exchange = _one_exchange()
    with pytest.raises(RefreshError, match="invalid_grant"):
        grant.finish(exchange, 400, '{"error": "invalid_grant"}', tokens, "at-1")
    assert tokens.for_session("https://api.example/", "at-1") is None
    assert tokens.realms() == []
    for status, body in ((503, "{}"), (400, NONCE_REFUSAL), (401, '{"error": "invalid_client"}')):
        grant, tokens, exchange = _one_exchange()
        with pytest.raises(RefreshError):
            grant.finish(exchange, status, body, tokens, "at-1")
        assert tokens.for_session("https://api.example/", "at-1") == "rt-1", (status, body)
    # Another tab's newer refresh token is not the refused one: it stays.
    grant, tokens, exchange = _one_exchange()
    tokens.set("https://api.example/", "rt-2", "at-2")
    with pytest.raises(RefreshError):
        grant.finish(exchange, 400, '{"error": "invalid_grant"}', tokens, "at-2")
    assert tokens.for_session("https://api.example/", "at-2") == "rt-2"
