"""DPoP proofs in the page: the app's key (the loader's IndexedDB store), WebCrypto signatures,
and the nonces servers gave. Everything else about a proof is the core's
(:mod:`pyauth_web.dpop`).

The key store (``web/pyauth-web.js``, ``dpopKeys``) holds one non-extractable P-256 key pair
per app: ``load()`` and ``create()`` resolve with ``{privateKey, jwk, created}`` (``load``: or
``null``), ``remove()`` deletes it. This module keeps the record it read, and forgets it when
the session ends (here or in another tab), so a key deleted elsewhere is never used again.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Coroutine
from typing import Any

import js
from pyodide.ffi import JsException, jsnull, to_js

from pyauth_web import dpop
from pyauth_web.refresh import Reason, RefreshError
from pyauth_web.tokens import TokenEntry, TokenStore

SIGN_ALGORITHM = {"name": "ECDSA", "hash": "SHA-256"}


class KeyLost(RefreshError):
    """A DPoP-bound token whose key is gone (storage wiped) or is another key: no request can
    use it; the user signs in again."""


class Key:
    def __init__(self, record: Any) -> None:
        self.private = record.privateKey
        self.jwk = dpop.public_jwk(record.jwk.to_py())
        self.jkt = dpop.thumbprint(self.jwk)


class Proofs:
    def __init__(self, keys: Any, clock: Callable[[], float]) -> None:
        self._keys = keys  # the loader's dpopKeys (None: no key store, DPoP unavailable)
        self._clock = clock
        self._key: Key | None = None
        self.nonces = dpop.Nonces()

    async def key(self, *, create: bool = False) -> Key | None:
        if self._key is None and self._keys is not None:
            try:
                record = await (self._keys.create() if create else self._keys.load())
            except JsException as exc:
                raise KeyLost(
                    "", Reason.DPOP_KEY_LOST, description=f"DPoP key store: {exc}"
                ) from exc
            if record is not None and record is not jsnull:
                try:
                    self._key = Key(record)
                except (dpop.InvalidProof, AttributeError) as exc:  # a record someone mangled
                    raise KeyLost(
                        "", Reason.DPOP_KEY_LOST, description=f"DPoP key record: {exc}"
                    ) from exc
        return self._key

    def forget(self) -> None:
        """The session ended (or changed in another tab): read the key again next time."""
        self._key = None

    async def delete(self) -> None:
        self._key = None
        self.nonces.clear()
        if self._keys is not None:
            try:
                await self._keys.remove()
            except JsException:
                pass  # no database (private mode): nothing stored

    async def proof(
        self,
        method: str,
        url: str,
        *,
        access_token: str | None = None,
        nonce: str | None = None,
        create: bool = False,
        realm: str = "",
        jkt: str | None = None,
    ) -> str:
        """A signed proof for ``method url``. ``jkt``: the thumbprint the token is bound to; a
        missing or other key raises :class:`KeyLost`. ``create``: make the key if there is none
        (a sign-in)."""
        key = await self.key(create=create)
        if key is None or (jkt is not None and key.jkt != jkt):
            self.forget()
            key = await self.key()  # another tab may have made it since
        if key is None:
            raise KeyLost(realm, Reason.DPOP_KEY_LOST, description="no DPoP key in this browser")
        if jkt is not None and key.jkt != jkt:
            raise KeyLost(
                realm, Reason.DPOP_KEY_LOST, description="the token is bound to another DPoP key"
            )
        claims = dpop.claims(
            method,
            url,
            iat=int(self._clock()),
            jti=secrets.token_urlsafe(18),
            access_token=access_token,
            nonce=nonce if nonce is not None else self.nonces.get(url),
        )
        signing_input = dpop.signing_input(key.jwk, claims)
        try:
            signature = await js.crypto.subtle.sign(
                to_js(SIGN_ALGORITHM, dict_converter=js.Object.fromEntries),
                key.private,
                to_js(signing_input.encode()),
            )
        except JsException as exc:  # not a usable private key
            self.forget()
            raise KeyLost(realm, Reason.DPOP_KEY_LOST, description=f"signing: {exc}") from exc
        return dpop.compact(signing_input, bytes(js.Uint8Array.new(signature).to_py()))

    def saw(self, url: str, nonce: object) -> bool:
        """A response from ``url``: keep its ``DPoP-Nonce``, if any; whether one was kept."""
        return nonce is not None and self.nonces.update(url, nonce)


class Binding:
    """Which tokens are DPoP-bound, and the headers that send them: the session's DPoP part.

    A token is bound when it is a JWT with ``cnf.jkt`` (the key's thumbprint: a token bound to
    another key, or a key that is gone, is a lost key) or its realm is in :attr:`realms`
    (``configure({dpop: [...]})``, for opaque tokens). A lost key fails the realm's refresh
    episode (``fail``: the coordinator's, which tells the host once, ``console:auth-error``
    with reason ``dpop key lost``, and stops refreshing); a sign-in starts a new episode."""

    def __init__(
        self,
        store: TokenStore,
        proofs: Proofs,
        fail: Callable[[RefreshError], None],
        session_token: Callable[[str], str | None],
    ) -> None:
        self.store = store
        self.proofs = proofs
        self.realms: frozenset[str] = frozenset()
        self._fail = fail
        self._session_token = session_token

    def bound(self, realm: str | None, token: str) -> bool:
        return realm in self.realms or dpop.bound_jkt(token) is not None

    def uses_dpop(self, entry: TokenEntry) -> bool:
        return entry.realm in self.realms or entry.jkt is not None  # read once, at store time

    def bound_realms(self) -> frozenset[str]:
        return frozenset(r for r, e in self.store.entries().items() if self.uses_dpop(e))

    async def _proof(self, realm: str, method: str, url: str, token: str, ath: bool) -> str:
        try:
            return await self.proofs.proof(
                method, url, access_token=token if ath else None, realm=realm,
                jkt=dpop.bound_jkt(token),
            )
        except KeyLost as exc:
            exc.realm = realm
            self._fail(exc)
            raise

    async def auth_headers(self, url: str, method: str, token: str) -> dict[str, str]:
        realm = self.store.realm_for(url)
        if not self.bound(realm, token):
            return {"Authorization": f"Bearer {token}"}
        proof = await self._proof(realm or url, method, url, token, ath=True)
        return {"Authorization": f"{dpop.SCHEME} {token}", dpop.PROOF_HEADER: proof}

    def saw_response(self, url: str, status: int, www_authenticate: Any, nonce: Any) -> bool:
        """A response to a request that carried a proof: keep its nonce; whether it is a
        ``use_dpop_nonce`` refusal (retried once; never a reason to refresh)."""
        self.proofs.saw(url, nonce)
        www = www_authenticate if isinstance(www_authenticate, str) else None
        return dpop.asks_for_nonce(status, www)

    async def token_request_headers(self, realm: str, url: str) -> dict[str, str]:
        """The ``DPoP`` header of a refresh when the realm's session is bound (its refresh
        token is bound to the same key); ``{}`` otherwise. A lost key raises :class:`KeyLost`,
        a final refresh failure."""
        token = self._session_token(realm)
        if token is None or not self.bound(realm, token):
            return {}
        return {dpop.PROOF_HEADER: await self._proof(realm, "POST", url, token, ath=False)}

    def saw_nonce(self, url: str, nonce: object) -> bool:
        """Keep a response's ``DPoP-Nonce``; whether one was kept."""
        return self.proofs.saw(url, nonce)

    async def proof_for_host(self, method: str, url: str, nonce: str | None) -> str:
        """``pyauthWeb.dpopProof``: for a request the host sends (the code exchange at
        sign-in); makes the app's key if there is none."""
        return await self.proofs.proof(method, url, nonce=nonce, create=True, realm=url)

    async def key_ok(self, entry: TokenEntry) -> bool:
        """Whether the app's key (read again) is there and is the one ``entry`` is bound to;
        when not, the realm's episode fails (one ``console:auth-error``)."""
        self.proofs.forget()
        try:
            key = await self.proofs.key()
        except KeyLost:
            key = None
        if key is not None and (entry.jkt is None or key.jkt == entry.jkt):
            return True
        self._fail(KeyLost(entry.realm, Reason.DPOP_KEY_LOST, description="no usable DPoP key"))
        return False

    def session_changed(self) -> None:
        """A sign-in or a change of the stored session: the key may be new (another tab's)."""
        self.proofs.forget()

    def logged_out(self) -> Coroutine[Any, Any, None]:
        """Forget and delete the app's key; returns the deletion for the caller to await."""
        return self.proofs.delete()
