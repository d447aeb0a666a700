"""Authenticated fetch as an httpx-style auth flow: a generator that yields what to do next.

Sans-I/O: the flow never performs I/O. The driver (``pyauth_web.browser.fetch``) answers each
command and sends the result back in::

    flow = auth_flow(replayable=True, current_token=lambda: store_lookup())
    command = next(flow)                      # GetToken()
    while True:
        try:
            command = flow.send(await execute(command))
        except StopIteration as done:
            response = done.value; break

Commands: :class:`GetToken` (a token valid beyond the skew margin, refreshing first if needed;
``None`` when the URL is in no realm), :class:`Send` (send the request with this token, or
without one when ``None``; answer with the response), :class:`ForceRefresh` (refresh although
the token looks valid, because the server rejected it; answer with the new token, or ``None``
when the refresh failed).

DPoP (RFC 9449 §9): a response that asks for a nonce (``asks_for_nonce(response)``; the driver
has kept the nonce) is sent once more with the same token (a new proof carries the nonce): at
most one nonce retry per request, and never for a body that cannot be replayed. A nonce
refusal is not a rejected token: it never forces a refresh.

Rules: one reactive retry at most. On a 401, if the token used is no longer the current one
(another caller refreshed meanwhile), retry with the current token without refreshing again;
otherwise force one refresh and retry. A body that cannot be replayed (a stream) is never
retried, and neither is a request that was sent without a token. A failed refresh returns
the original 401.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Protocol


class HasStatus(Protocol):
    @property
    def status(self) -> int: ...


@dataclass(frozen=True)
class GetToken:
    pass


@dataclass(frozen=True)
class Send:
    token: str | None


@dataclass(frozen=True)
class ForceRefresh:
    stale_token: str


Command = GetToken | Send | ForceRefresh
Answer = str | HasStatus | None
"""What the driver sends back: the token (or ``None``) for :class:`GetToken` and
:class:`ForceRefresh`, the response for :class:`Send`."""
AuthFlow = Generator[Command, Answer, HasStatus]


def auth_flow(
    *,
    replayable: bool,
    current_token: Callable[[], str | None],
    asks_for_nonce: Callable[[HasStatus], bool] = lambda response: False,
) -> AuthFlow:
    nonce_retried = False

    def send(token: str | None) -> Generator[Command, Answer, HasStatus]:
        nonlocal nonce_retried
        response = _response((yield Send(token)))
        if token is not None and replayable and not nonce_retried and asks_for_nonce(response):
            nonce_retried = True
            response = _response((yield Send(token)))
        return response

    token = _token((yield GetToken()))
    response = yield from send(token)
    if response.status != 401 or token is None or not replayable or asks_for_nonce(response):
        return response
    now = current_token()
    if now is not None and now != token:  # stale 401: someone refreshed since we sent
        return (yield from send(now))
    fresh = _token((yield ForceRefresh(token)))
    if fresh is None:
        return response
    return (yield from send(fresh))


def _token(answer: Answer) -> str | None:
    if answer is None or isinstance(answer, str):
        return answer
    raise TypeError(f"auth_flow: expected a token (str or None), got {type(answer).__name__}")


def _response(answer: Answer) -> HasStatus:
    if answer is None or isinstance(answer, str):
        raise TypeError(f"auth_flow: expected a response, got {type(answer).__name__}")
    return answer
