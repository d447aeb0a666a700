"""The worker's bounded memory never resurrects a token (SECURITY.md): when it drops an app's
state (past MAX_APPS) or the oldest removal marks of an app (past MAX_REMOVED), a page's late
reply to an ask that started before a logout or a removal is still refused. Checked in the real
worker, on its own state, through its own reply step (``takeReply``); the fuzz floods past the
same bounds from pages."""

from __future__ import annotations

from typing import Any

from support import Servers, wait_controlled

LATE_REPLIES = """() => {
  const realm = 'https://late.example/';
  const url = `${realm}img/x`;
  const reply = { realmURL: realm, token: 'late-token', exp: null };
  const fate = (app, start) => (takeReply(app, reply, url, start) ? 'taken' : 'refused');
  const out = {};

  // An ask starts; the app logs out; then so many other apps come that its state is dropped.
  let start = seq;
  clearTokens(appState('late-a'));
  for (let i = 0; i < MAX_APPS; i++) appState(`late-a-crowd-${i}`);
  out.evicted = !apps.has('late-a');
  out.afterEviction = fate('late-a', start);
  out.askedLater = fate('late-a', seq);

  // An ask starts; the realm is removed; then so many other removals that its mark is dropped.
  const state = appState('late-b');  // (made before the ask: its own marks decide)
  start = seq;
  dropToken(state, realm);
  for (let i = 0; i < MAX_REMOVED; i++) dropToken(state, `https://late.example/other/${i}/`);
  out.markDropped = !state.removedAt.has(realm);
  out.afterMarkDropped = fate('late-b', start);
  out.askedLaterB = fate('late-b', seq);
  return out;
}"""


def test_a_late_reply_is_refused_after_the_worker_dropped_what_refused_it(
    page: Any, servers: Servers, page_errors: list[str]
) -> None:
    page.goto(servers.host + "/t/bare.html")
    wait_controlled(page)
    worker = page.context.service_workers[-1]
    assert worker.evaluate(LATE_REPLIES) == {
        "evicted": True,
        "afterEviction": "refused",  # the logout's mark went with the state: still refused
        "askedLater": "taken",  # an ask that started after it is answered as usual
        "markDropped": True,
        "afterMarkDropped": "refused",  # the removal's mark is gone: still refused
        "askedLaterB": "taken",
    }
    assert page_errors == []
