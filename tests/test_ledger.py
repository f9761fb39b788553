"""The partition ledger: over arbitrary records, rebalances and restarts, the committed
offset never passes an open upload or an unaccounted record, every whole upload ends, and
abandonment decides the same on a replay as on the first pass."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from msi_tui.engine.ledger import Ledger

ABANDON_MS = 1000


@dataclass(frozen=True)
class Rec:
    upload: int
    kind: str  # "first", "more", "last" or "alone" (a one-record upload)
    ms: int


@st.composite
def partitions(draw: st.DrawFn) -> list[Rec]:
    """Interleaved uploads on one partition, timestamps non-decreasing; some uploads never end."""
    n = draw(st.integers(1, 6))
    lengths = [draw(st.integers(1, 5)) for _ in range(n)]
    ends = [draw(st.booleans()) for _ in range(n)]
    cursors = [0] * n
    records: list[Rec] = []
    ms = 0
    while True:
        live = [u for u in range(n) if cursors[u] < lengths[u] - (0 if ends[u] else 1)]
        if not live:
            return records
        u = draw(st.sampled_from(live))
        ms += draw(st.sampled_from([0, 10, 400, 1500]))
        i = cursors[u]
        cursors[u] += 1
        kind = "alone" if lengths[u] == 1 else "first" if i == 0 else "last" if i == lengths[u] - 1 else "more"
        records.append(Rec(u, kind, ms))


Commit = tuple[int, int | None, frozenset[int]]  # read up to, committed, uploads ended by then


def run(records: list[Rec], breaks: set[int]) -> tuple[set[int], set[int], list[Commit]]:
    """Consume the partition, restarting from the committed offset after each step in
    `breaks`; returns uploads published, uploads abandoned and the commits made."""
    ledger = Ledger(ABANDON_MS)
    ledger.assign(0, None)
    ended: set[int] = set()  # any outcome, across ownerships (the receipts)
    published: set[int] = set()
    abandoned: set[int] = set()
    commits: list[Commit] = []
    offset, steps = 0, 0
    while offset < len(records):
        rec = records[offset]
        uid = str(rec.upload)
        if ledger.fresh(0, offset) and rec.upload not in ended:
            if rec.kind in ("first", "alone"):
                ledger.open(0, uid, offset, rec.ms)
            elif ledger.is_open(0, uid):
                ledger.touch(0, uid, rec.ms)
            if rec.kind in ("last", "alone") and ledger.is_open(0, uid):
                ledger.close(0, uid)
                published.add(rec.upload)
                ended.add(rec.upload)
        ledger.accounted(0, offset, rec.ms)
        for gone in ledger.abandoned(0):
            ledger.close(0, gone)
            abandoned.add(int(gone))
            ended.add(int(gone))
        offset += 1
        steps += 1
        if steps in breaks:  # a rebalance or a restart: resume from what was committed
            committed = ledger.safe_offset(0)
            commits.append((offset, committed, frozenset(ended)))
            for uid_open in ledger.revoke(0):
                assert int(uid_open) not in ended
            ledger.assign(0, committed)
            offset = committed if committed is not None else 0
    return published, abandoned, commits


def first_offsets(records: list[Rec]) -> dict[int, int]:
    firsts: dict[int, int] = {}
    for offset, rec in enumerate(records):
        firsts.setdefault(rec.upload, offset)
    return firsts


@settings(max_examples=400, deadline=None)
@given(records=partitions(), data=st.data())
def test_rebalances_lose_nothing_and_decide_like_one_pass(records: list[Rec], data: st.DataObject) -> None:
    breaks = set(data.draw(st.lists(st.integers(1, 3 * len(records) + 1), max_size=4)))
    once_published, once_abandoned, _ = run(records, set())
    published, abandoned, commits = run(records, breaks)
    firsts = first_offsets(records)
    whole = {r.upload for r in records if r.kind in ("last", "alone")}
    # Every whole upload ends, the same way as in one pass.
    assert published | abandoned >= whole
    assert published == once_published and abandoned == once_abandoned
    for at, committed, ended_by_then in commits:
        assert committed is None or committed <= at  # never past a record not yet read
        # Never past the first record of an upload that had not ended by then.
        for upload, first in firsts.items():
            if first < at and upload not in ended_by_then and committed is not None:
                assert committed <= first


def test_stale_records_are_not_fresh_and_positions_only_move_forward() -> None:
    ledger = Ledger(ABANDON_MS)
    ledger.assign(3, 10)
    assert not ledger.fresh(3, 9) and ledger.fresh(3, 10)
    ledger.accounted(3, 14, 5)
    ledger.accounted(3, 12, 4)  # (an older batch reported late changes nothing)
    assert ledger.safe_offset(3) == 15
    assert not ledger.fresh(4, 0)  # not owned


def test_an_open_upload_pins_until_it_ends_and_a_revoke_hands_it_back() -> None:
    ledger = Ledger(ABANDON_MS)
    ledger.assign(0, None)
    assert ledger.safe_offset(0) is None
    ledger.open(0, "a", 5, 0)
    ledger.accounted(0, 9, 0)
    assert ledger.safe_offset(0) == 5
    assert ledger.revoke(0) == ["a"]
    assert ledger.safe_offset(0) is None and not ledger.owns(0)


def test_abandonment_follows_record_time_not_silence() -> None:
    ledger = Ledger(ABANDON_MS)
    ledger.assign(0, 0)
    ledger.open(0, "slow", 0, 0)
    ledger.accounted(0, 0, 0)
    assert ledger.abandoned(0) == []
    ledger.accounted(0, 1, ABANDON_MS)  # exactly the limit: not yet
    assert ledger.abandoned(0) == []
    ledger.accounted(0, 2, ABANDON_MS + 1)
    assert ledger.abandoned(0) == ["slow"]
    ledger.close(0, "slow")
    assert ledger.safe_offset(0) == 3
