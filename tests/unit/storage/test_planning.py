"""The storage planner's rules, on plain values."""

from __future__ import annotations

from preservation.catalog.models import CartridgeState as S
from preservation.catalog.models import CopyStatus as C
from preservation.storage.planning import (
    CartridgeView,
    CopyView,
    ErrorKind,
    RecallItem,
    batch_recalls,
    candidate_cartridges,
    order_recalls,
    plan_repairs,
    state_after_error,
)


def test_candidates_prefer_mounted_then_fullest_filling_then_scratch() -> None:
    carts = [
        CartridgeView("A00001L9", S.SCRATCH, 100),
        CartridgeView("A00002L9", S.FILLING, 60),
        CartridgeView("A00003L9", S.FILLING, 20),
        CartridgeView("A00004L9", S.FILLING, 90, mounted=True),
        CartridgeView("A00005L9", S.SCRATCH, 100, mounted=True),
        CartridgeView("A00006L9", S.FULL, 100),
        CartridgeView("A00007L9", S.SUSPECT, 100),
        CartridgeView("A00008L9", S.FILLING, 5),  # too small
    ]
    assert candidate_cartridges(carts, 10) == [
        "A00004L9",
        "A00003L9",
        "A00002L9",
        "A00005L9",
        "A00001L9",
    ]


def test_candidates_respect_exclusions_and_worn_cartridges() -> None:
    carts = [
        CartridgeView("A00001L9", S.FILLING, 100),
        CartridgeView("A00002L9", S.FILLING, 100, errors=3),
        CartridgeView("A00003L9", S.SCRATCH, 100),
    ]
    assert candidate_cartridges(carts, 10, exclude={"A00001L9"}) == ["A00003L9"]
    assert candidate_cartridges(carts, 1000) == []


def test_state_after_error() -> None:
    assert state_after_error(S.FILLING, 1, ErrorKind.READ) == S.FILLING
    assert state_after_error(S.FILLING, 1, ErrorKind.WRONG) == S.FILLING
    assert state_after_error(S.FILLING, 1, ErrorKind.WRITE) == S.SUSPECT
    assert state_after_error(S.FULL, 1, ErrorKind.LOAD) == S.SUSPECT
    assert state_after_error(S.FILLING, 3, ErrorKind.READ) == S.FAILED
    assert state_after_error(S.FILLING, 3, ErrorKind.WRONG) == S.FILLING  # not the medium
    assert state_after_error(S.FULL, 7, ErrorKind.WRONG) == S.FULL
    assert state_after_error(S.RETIRED, 9, ErrorKind.WRITE) == S.RETIRED


def test_recalls_grouped_by_cartridge_in_position_order_mounted_first() -> None:
    items = [
        RecallItem("B00002L9", 50, "x"),
        RecallItem("B00001L9", 900, "y"),
        RecallItem("B00002L9", 10, "z"),
        RecallItem("B00001L9", 7, "w"),
        RecallItem("B00003L9", 7, "v"),
    ]
    ordered = order_recalls(items, mounted={"B00003L9"})
    assert [i.key for i in ordered] == ["v", "w", "y", "z", "x"]
    # each cartridge appears in one run: mounted once per batch
    runs = [
        i.barcode for n, i in enumerate(ordered) if n == 0 or ordered[n - 1].barcode != i.barcode
    ]
    assert len(runs) == len(set(runs))


def test_batches_bounded_by_bytes_keep_order() -> None:
    items = [RecallItem("B1", n, n, size=40) for n in range(5)]
    batches = batch_recalls(items, max_bytes=100)
    assert [[i.key for i in b] for b in batches] == [[0, 1], [2, 3], [4]]
    assert batch_recalls([RecallItem("B1", 0, 0, size=500)], max_bytes=100)[0][0].key == 0


def test_plan_repairs_finds_missing_and_unhealthy_copies() -> None:
    ok_a = CopyView(1, 10, "site-a", "A1", C.VERIFIED, S.FILLING, 7)
    ok_b = CopyView(2, 10, "site-b", "B1", C.VERIFIED, S.FULL, 7)
    bad_a = CopyView(3, 11, "site-a", "A2", C.VERIFIED, S.SUSPECT, 7)
    failed_a = CopyView(4, 11, "site-a", "A1", C.FAILED, S.FILLING, 40)
    b11 = CopyView(5, 11, "site-b", "B1", C.VERIFIED, S.FILLING, 30)
    only_a = CopyView(6, 12, "site-a", "A1", C.VERIFIED, S.FILLING, 50)
    needs = plan_repairs(
        {10: [ok_a, ok_b], 11: [bad_a, failed_a, b11], 12: [only_a]}, ("site-a", "site-b")
    )
    assert [(n.version_id, n.site) for n in needs] == [(11, "site-a"), (12, "site-b")]
    v11 = needs[0]
    assert v11.replaces == (3, 4)
    assert v11.avoid == {"A1", "A2"}
    assert [s.copy_id for s in v11.sources] == [5]
    assert needs[1].replaces == () and [s.copy_id for s in needs[1].sources] == [6]
