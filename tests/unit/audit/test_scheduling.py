"""The audit planner on its own: which cartridges a run reads, and in what order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from preservation.audit.scheduling import (
    CopyToCheck,
    bound_rounds,
    estimate_seconds,
    oldest_first,
)
from preservation.storage.clock import DriveTiming

NOW = datetime(2026, 12, 6, tzinfo=UTC)


def copy(
    cid: int, barcode: str, block: int, days_ago: float | None, length: int = 10
) -> CopyToCheck:
    checked = None if days_ago is None else NOW - timedelta(days=days_ago)
    return CopyToCheck(
        cid, f"aip-{cid}", 1, barcode[0], barcode, f"/t/{cid}", block, length, checked
    )


def test_the_stalest_cartridge_comes_first_and_each_is_read_in_block_order() -> None:
    rounds = oldest_first(
        [
            copy(1, "A00001L9", 900, 3),
            copy(2, "A00002L9", 50, 400),  # one stale copy makes its cartridge stale
            copy(3, "A00001L9", 7, 2),
            copy(4, "A00002L9", 7, 1),
            copy(5, "A00003L9", 7, 30),
        ]
    )
    assert [r.barcode for r in rounds] == ["A00002L9", "A00003L9", "A00001L9"]
    assert [c.copy_id for c in rounds[0].copies] == [4, 2]
    assert [c.copy_id for c in rounds[2].copies] == [3, 1]


def test_never_checked_copies_lead_and_ties_are_stable() -> None:
    rounds = oldest_first(
        [copy(1, "B00002L9", 7, 5), copy(2, "B00001L9", 7, 5), copy(3, "B00003L9", 7, None)]
    )
    assert [r.barcode for r in rounds] == ["B00003L9", "B00001L9", "B00002L9"]
    assert rounds[0].oldest_check is None


def test_naive_and_aware_times_sort_together() -> None:
    naive = CopyToCheck(9, "x", 1, "A", "A00009L9", "/x", 7, 1, datetime(2020, 1, 1))
    rounds = oldest_first([copy(1, "A00001L9", 7, 1), naive])
    assert rounds[0].barcode == "A00009L9"


def test_bounds_begin_no_cartridge_after_the_time_is_spent_but_always_one() -> None:
    rounds = oldest_first([copy(i, f"A0000{i}L9", 7, 10 - i) for i in range(1, 6)])
    assert len(bound_rounds(rounds, max_cartridges=2)) == 2
    cost = {r.barcode: 100.0 for r in rounds}
    assert len(bound_rounds(rounds, max_seconds=250, cost=cost)) == 3  # begun at 0, 100, 200
    assert len(bound_rounds(rounds, max_seconds=1, cost={b: 1e6 for b in cost})) == 1
    assert bound_rounds(rounds) == rounds


def test_estimate_charges_load_unload_seeks_and_streaming() -> None:
    timing = DriveTiming.lto9()
    block = 512 * 1024
    [adjacent] = oldest_first([copy(1, "A00001L9", 0, 1, block), copy(2, "A00001L9", 1, 1, block)])
    [apart] = oldest_first([copy(1, "A00001L9", 0, 1, block), copy(2, "A00001L9", 5000, 1, block)])
    base = timing.load_seconds + timing.unload_seconds + timing.transfer_seconds(2 * block)
    assert estimate_seconds(adjacent, timing, 10_000, block) == pytest.approx(base)
    assert estimate_seconds(apart, timing, 10_000, block) > base + timing.locate_overhead_seconds
