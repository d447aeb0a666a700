"""The session record (pyauth_web/record.py): the one order of logouts, refresh results and sign-ins
that every tab and the worker agree on, and how it judges what localStorage shows."""

from __future__ import annotations

import json

import jwt
from hypothesis import given, settings
from hypothesis import strategies as st

from pyauth_web.oauth import RefreshTokenMap, session_digest
from pyauth_web.record import LAG_MS, MAX_MIRRORS, MAX_SINCE, SessionRecord, Stored, fingerprint

A, B = "https://a.example/", "https://b.example/"
NOW = 1_800_000_000_000.0  # ms


def token(sub: str) -> str:
    return jwt.encode({"sub": sub, "exp": 1_900_000_000}, "k" * 32, algorithm="HS256")


T1, T2, T3 = token("one"), token("two"), token("three")


def signed_in() -> SessionRecord:
    record = SessionRecord()
    record.set_session(A, T1, "rt-1", NOW)
    return record


# -- the order of a refresh against everything else ---------------------------------------------
def test_a_refresh_result_is_kept_while_the_realm_holds_the_token_it_replaced() -> None:
    record = signed_in()
    assert record.refreshed(A, T1, T2, NOW, ("rt-1", "rt-2"))
    assert record.tokens == {A: T2}
    assert record.refresh.for_session(A, T2) == "rt-2"  # the rotated one, paired with T2
    assert record.refresh.for_session(A, T1) is None


def test_a_refresh_result_after_a_logout_a_removal_or_a_new_session_is_discarded() -> None:
    for end in (
        lambda r: r.logout(NOW),
        lambda r: r.remove(A, NOW),
        lambda r: r.set_session(A, T3, None, NOW),  # another user signed in
        lambda r: r.ingest({A: T3}, NOW),  # ... through storage, written by the host
    ):
        record = signed_in()
        end(record)
        before = record.dumps()
        assert not record.refreshed(A, T1, T2, NOW, ("rt-1", "rt-2"))
        assert record.dumps() == before  # nothing of the refresh is stored, no refresh token
        assert T2 not in before and "rt-2" not in before


def test_a_sibling_s_refresh_is_in_the_record_for_the_next_lock_holder() -> None:
    record = signed_in()
    record.refreshed(A, T1, T2, NOW)
    next_holder = SessionRecord.loads(record.dumps())  # what the next tab reads under the lock
    assert next_holder.tokens[A] == T2
    assert not next_holder.refreshed(A, T1, T3, NOW)  # a late result for T1 cannot win over T2


def test_a_refused_refresh_token_goes_only_if_it_is_still_the_session_s() -> None:
    record = signed_in()
    assert not record.refused(A, "rt-other", NOW)
    assert record.refused(A, "rt-1", NOW)
    assert record.refresh.for_session(A, T1) is None


# -- what the worker may keep -------------------------------------------------------------------
def test_nothing_read_before_a_logout_removal_or_new_session_is_accepted() -> None:
    record = signed_in()
    read_at = record.version
    assert record.accepts(read_at, A)
    record.refreshed(A, T1, T2, NOW)  # a refresh is the same session: older reads still count
    assert record.accepts(read_at, A)
    record.set_session(B, T3, None, NOW)
    assert record.accepts(read_at, A) and not record.accepts(read_at, B)
    record.remove(A, NOW)
    assert not record.accepts(read_at, A) and record.accepts(record.version, A)
    at_b = record.version
    record.logout(NOW)
    assert not record.accepts(at_b, B) and record.cleared == record.version
    assert record.accepts(record.version, A) and record.accepts(record.version, B)


def test_the_realm_marks_are_bounded_and_dropping_one_refuses_everything_older() -> None:
    record = SessionRecord()
    versions = []
    for i in range(MAX_SINCE + 10):
        record = SessionRecord.loads(record.dumps())  # as each tab's transaction reads it
        record.remove(f"https://r{i}.example/", NOW)
        versions.append(record.version)
    assert len(record.since) == MAX_SINCE
    assert record.cleared == versions[9]  # the 10 oldest marks went: nothing before them counts
    assert not record.accepts(versions[9] - 1, "https://r100.example/")
    assert record.since["https://r10.example/"] == versions[10]  # the newest are all kept


def test_versions_follow_the_clock_so_a_record_made_anew_still_orders_after_the_old_one() -> None:
    old = signed_in()
    old.logout(NOW)
    anew = SessionRecord()  # the host deleted the database, or a tab keeps one in memory
    anew.set_session(A, T2, None, NOW + 1000)
    assert anew.version > old.cleared and SessionRecord().version == 0
    old.set_session(A, T1, None, NOW - 5_000)  # a clock that went back: still after
    assert old.version == old.cleared + 1


def test_a_hand_written_version_beyond_any_clock_starts_the_order_anew() -> None:
    record = SessionRecord.loads(json.dumps({"version": 2**60, "cleared": 2**60, "tokens": {A: T1}}))
    assert (record.version, record.cleared, record.tokens) == (0, 0, {A: T1})


# -- what localStorage shows --------------------------------------------------------------------
def test_the_mirror_is_the_stored_format() -> None:
    record = signed_in()
    record.set_session(B, T2, None, NOW)
    assert json.loads(record.stored() or "") == {A: T1, B: T2}
    assert record.classify(record.stored()) is Stored.SYNC
    record.logout(NOW)
    assert record.stored() is None and record.classify(None) is Stored.SYNC


def test_a_value_the_runtime_wrote_earlier_is_stale_never_the_host_s() -> None:
    record = signed_in()
    earlier = record.stored()
    record.refreshed(A, T1, T2, NOW)
    assert record.classify(earlier) is Stored.STALE  # storage lags behind the refresh
    record.logout(NOW)
    assert record.classify(earlier) is Stored.STALE  # a late write after the logout: not followed


def test_the_host_s_own_value_is_the_host_s() -> None:
    record = signed_in()
    assert record.classify(json.dumps({A: T3})) is Stored.HOST
    assert record.classify("{not json") is Stored.HOST


def test_no_value_is_the_host_s_logout_unless_storage_lags_behind_a_sign_in() -> None:
    record = SessionRecord()
    record.set_session(A, T1, None, NOW)
    assert record.classify(None, now_ms=NOW) is Stored.HOST  # the host removed it
    record.logout(NOW)
    record.set_session(A, T2, None, NOW + 10)  # signed in again, at once
    mine = record.stored()
    # Right after the runtime removed the value, no value is storage not having caught up...
    assert record.classify(None, now_ms=NOW + 20) is Stored.STALE
    # ... unless this tab saw the record's own value go (then only the host removed it) ...
    assert record.classify(None, before=mine, now_ms=NOW + 20) is Stored.HOST
    # ... and later, no value is the host's logout.
    assert record.classify(None, now_ms=NOW + 10 + LAG_MS) is Stored.HOST
    # A clear() of all storage is the host's, even right after the runtime's own removal.
    assert record.classify(None, now_ms=NOW + 20, cleared=True) is Stored.HOST
    assert record.classify(mine, now_ms=NOW + 20, cleared=True) is Stored.SYNC  # written since


def test_a_record_older_than_one_followed_was_wiped_and_is_a_logout_after_it() -> None:
    followed = signed_in()
    followed.refreshed(A, T1, T2, NOW + 5)
    written = followed.stored()
    gone = SessionRecord()  # the database was deleted: what a read finds now
    assert gone.after_wipe(followed, NOW + 10)
    assert gone.version > followed.version and gone.cleared == gone.version
    assert gone.tokens == {} and gone.stored() is None
    assert not gone.accepts(followed.version, A)  # nothing read before the wipe counts
    # A late copy of what the runtime wrote is stale, never the host's sign-in.
    assert gone.classify(written, now_ms=NOW + 10 + LAG_MS) is Stored.STALE
    # A record as new as the one followed (or newer) was not wiped: nothing changes.
    same = SessionRecord.loads(followed.dumps())
    assert not same.after_wipe(followed, NOW + 20) and same.tokens == {A: T2}
    # Versions follow the clock, so even a clock behind the old record still orders after it.
    behind = SessionRecord()
    assert behind.after_wipe(followed, 0.0) and behind.version == followed.version + 1


def test_only_the_newest_mirrors_are_remembered() -> None:
    record = SessionRecord()
    first = None
    for i in range(MAX_MIRRORS + 1):
        record.set_session(A, token(f"u{i}"), None, NOW)
        first = first or record.stored()
    assert len(record.mirrors) == MAX_MIRRORS
    assert fingerprint(first or "") not in record.mirrors
    assert record.classify(first) is Stored.HOST


def test_the_host_s_session_replaces_the_record_s_and_ends_the_changed_realms() -> None:
    record = signed_in()
    record.set_session(B, T2, None, NOW)
    at = record.version
    assert record.ingest({A: T1, B: T3}, NOW)
    assert record.tokens == {A: T1, B: T3}
    assert record.refresh.for_session(A, T1) == "rt-1"  # A's session did not change
    assert not record.accepts(at, B) and record.accepts(at, A)
    assert not record.ingest({A: T1, B: T3}, NOW)  # the same again: nothing changes
    assert record.ingest({}, NOW) and record.tokens == {} and record.refresh.realms() == []


def test_refresh_tokens_an_older_bundle_left_in_storage_move_in_when_they_fit_the_session() -> None:
    record = SessionRecord()
    record.set_session(A, T1, None, NOW)
    record.set_session(B, T2, None, NOW)
    legacy = RefreshTokenMap()
    legacy.set(A, "rt-a", T1)
    legacy.set(B, "rt-b", T3)  # paired with another session: not taken
    assert record.adopt_refresh(legacy, NOW)
    assert record.refresh.for_session(A, T1) == "rt-a" and record.refresh.for_session(B, T2) is None
    assert not record.adopt_refresh(legacy, NOW)  # nothing more to take


# -- the stored form ----------------------------------------------------------------------------
def test_the_record_round_trips() -> None:
    record = signed_in()
    record.refreshed(A, T1, T2, NOW, ("rt-1", "rt-2"))
    record.remove(B, NOW)
    again = SessionRecord.loads(record.dumps())
    assert again == record and again.dumps() == record.dumps()


def test_hostile_values_in_the_record_are_left_out() -> None:
    text = json.dumps({
        "version": 5, "cleared": 9, "since": {A: 99, "not a realm": 1, "HTTPS://A.example/": 2},
        "tokens": {A: T1, B: 7, "javascript:x": T1, "https://c.example/": ""},
        "refresh": {A: {"refresh_token": "rt", "session": session_digest(T1)}, B: "x"},
        "mirrors": ["x" * 65, "ok", 3], "emptied": -1,
    })
    record = SessionRecord.loads(text)
    assert record.version == 5 and record.cleared == 5 and record.since == {A: 5}  # never beyond
    assert record.tokens == {A: T1}
    assert record.refresh.for_session(A, T1) == "rt" and record.refresh.realms() == [A]
    assert record.mirrors == ["ok"] and record.emptied == 0.0
    for junk in (None, "", "[]", "null", '"x"', "{", "1e999", '{"version": true}', 42):
        assert SessionRecord.loads(junk) == SessionRecord()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=20), inner, max_size=4),
    max_leaves=20,
)
fields = st.sampled_from(["version", "cleared", "since", "tokens", "refresh", "mirrors", "emptied"])


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(fields | st.text(max_size=8), json_values, max_size=8))
def test_any_json_loads_into_a_record_that_round_trips(data: dict[str, object]) -> None:
    record = SessionRecord.loads(json.dumps(data))
    assert SessionRecord.loads(record.dumps()) == record
    assert 0 <= record.cleared <= record.version
    assert all(0 <= at <= record.version for at in record.since.values())


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["set1", "set2", "refresh", "remove", "logout", "host"]), max_size=30))
def test_a_value_written_before_a_logout_is_never_taken_for_the_host_s(steps: list[str]) -> None:
    """Whatever happened before, after a logout every non-empty value the runtime had written
    (any of which may land late in storage) is stale, never a host write to take in: a logout
    cannot be undone through storage (within the last MAX_MIRRORS writes)."""
    record = SessionRecord()
    written: list[str] = []
    for i, step in enumerate(steps):
        t = token(f"s{i}")
        if step == "set1":
            record.set_session(A, t, None, NOW)
        elif step == "set2":
            record.set_session(B, t, None, NOW)
        elif step == "refresh" and A in record.tokens:
            record.refreshed(A, record.tokens[A], t, NOW)
        elif step == "remove":
            record.remove(A, NOW)
        elif step == "logout":
            record.logout(NOW)
        elif step == "host":
            record.ingest({B: t}, NOW)
        stored = record.stored()
        if stored is not None:
            written.append(stored)
    record.logout(NOW)
    for value in written[-MAX_MIRRORS:]:
        assert record.classify(value, now_ms=NOW) is Stored.STALE


def test_a_refresh_that_brings_the_same_access_token_still_keeps_the_rotated_refresh_token() -> None:
    record = signed_in()
    assert record.refreshed(A, T1, T1, NOW, ("rt-1", "rt-2"))
    assert record.refresh.for_session(A, T1) == "rt-2"  # else the next refresh reuses rt-1
    before = record.version
    assert record.refreshed(A, T1, T1, NOW, ("rt-2", "rt-2"))  # nothing rotated: no change
    assert record.version == before


def test_refresh_tokens_an_older_bundle_wrote_with_its_sign_in_move_in_with_that_session() -> None:
    """An older bundle's tab signs in: storage gets its session and its refresh token beside
    it. Taken in as the host's, then the refresh token adopted: it pairs with the new session."""
    record = signed_in()
    legacy = RefreshTokenMap()
    legacy.set(A, "rt-old-bundle", T2)
    record.ingest({A: T2}, NOW)
    assert record.adopt_refresh(legacy, NOW)
    assert record.refresh.for_session(A, T2) == "rt-old-bundle"
