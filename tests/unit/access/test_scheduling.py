"""The recall planner's rules, on plain values."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from preservation.access.scheduling import (
    CartridgeVisit,
    Read,
    RecallPlan,
    SiteView,
    TarCopy,
    TarNeed,
    plan_first_come,
    plan_recall,
)

A = SiteView("a", drives=1)
B = SiteView("b", drives=1)
SITES = (A, B)

_ids = iter(range(1, 1_000_000))


def copy(site: str, barcode: str, block: int | None = 0, *, healthy: bool = True) -> TarCopy:
    return TarCopy(next(_ids), site, barcode, block, size=10, healthy=healthy)


def need(version_id: int, *copies: TarCopy) -> TarNeed:
    return TarNeed(version_id, copies)


def versions(plan: RecallPlan) -> list[int]:
    return [r.version_id for v in plan.visits for r in v.reads]


def cartridges(plan: RecallPlan) -> list[tuple[str, str]]:
    return [(v.site, v.barcode) for v in plan.visits]


def test_a_version_asked_for_twice_is_read_once() -> None:
    c = copy("a", "A1")
    plan = plan_recall([need(1, c), need(2, copy("a", "A1", 5)), need(1, c)], SITES)
    assert sorted(versions(plan)) == [1, 2]
    assert plan.bytes == 20


def test_duplicate_needs_pool_their_copies() -> None:
    # The second request names a copy the first did not (e.g. listed after a repair).
    plan = plan_recall([need(1, copy("a", "A1", healthy=False)), need(1, copy("b", "B1"))], SITES)
    assert cartridges(plan) == [("b", "B1")]


def test_one_visit_per_cartridge_with_its_reads_in_block_order() -> None:
    needs = [
        need(1, copy("a", "A1", 300)),
        need(2, copy("a", "A2", 7)),
        need(3, copy("a", "A1", None)),
        need(4, copy("a", "A1", 20)),
        need(5, copy("a", "A2", 3)),
    ]
    plan = plan_recall(needs, SITES)
    assert cartridges(plan) == [("a", "A1"), ("a", "A2")]
    assert [r.version_id for r in plan.visits[0].reads] == [3, 4, 1]
    assert [r.version_id for r in plan.visits[1].reads] == [5, 2]
    assert plan.mounts == 2


def test_the_greedy_cover_takes_the_cartridge_serving_most() -> None:
    # A1 alone serves all three; the B copies are each on a cartridge of their own.
    needs = [need(v, copy("b", f"B{v}"), copy("a", "A1", v)) for v in (1, 2, 3)]
    plan = plan_recall(needs, SITES)
    assert cartridges(plan) == [("a", "A1")]


def test_a_mounted_cartridge_wins() -> None:
    needs = [
        need(1, copy("a", "A1", 1), copy("b", "B9")),
        need(2, copy("a", "A1", 2), copy("b", "B8")),
    ]
    b = SiteView("b", drives=1, mounted=frozenset({"B9"}))
    plan = plan_recall(needs, (A, b))
    assert plan.by_site()["b"] == [CartridgeVisit("b", "B9", (Read(1, needs[0].copies[1]),), True)]
    assert [r.version_id for r in plan.by_site()["a"][0].reads] == [2]
    assert plan.mounts == 1


def test_mounted_cartridges_come_first_at_their_site() -> None:
    needs = [need(1, copy("a", "A1")), need(2, copy("a", "A9"))]
    plan = plan_recall(needs, (SiteView("a", 2, mounted=frozenset({"A9"})), B))
    assert cartridges(plan) == [("a", "A9"), ("a", "A1")]
    assert [v.mounted for v in plan.visits] == [True, False]


def test_equal_cartridges_are_spread_over_both_sites() -> None:
    needs = [
        need(v, copy("a", f"A{(v - 1) // 2}", v), copy("b", f"B{(v - 1) // 2}", v))
        for v in range(1, 9)
    ]
    plan = plan_recall(needs, SITES)
    per_site = {site: len(visits) for site, visits in plan.by_site().items()}
    assert per_site == {"a": 2, "b": 2}
    # Interleaved, so a sequential executor still alternates sites.
    assert [v.site for v in plan.visits] == ["a", "b", "a", "b"]
    assert sorted(versions(plan)) == list(range(1, 9))


def test_balance_counts_work_per_drive() -> None:
    # Site a has three drives: it takes a second cartridge before b's single drive is used.
    needs = [need(v, copy("a", f"A{v}"), copy("b", f"B{v}")) for v in (1, 2, 3, 4)]
    plan = plan_recall(needs, (SiteView("a", 3), B))
    assert {s: len(v) for s, v in plan.by_site().items()} == {"a": 3, "b": 1}


def test_an_excluded_copy_sends_the_read_to_the_other_site() -> None:
    bad = copy("a", "A1")
    plan = plan_recall([need(1, bad, copy("b", "B1"))], SITES, exclude={bad.copy_id})
    assert cartridges(plan) == [("b", "B1")]
    assert plan.unreadable == ()


def test_a_site_that_is_down_reads_nothing() -> None:
    needs = [need(1, copy("a", "A1"), copy("b", "B1")), need(2, copy("a", "A1", 5))]
    plan = plan_recall(needs, (SiteView("a", 1, down=True), B))
    assert cartridges(plan) == [("b", "B1")]
    assert plan.unreadable == (2,)


def test_an_unhealthy_copy_is_the_last_resort() -> None:
    mounted_but_suspect = copy("a", "A1", healthy=False)
    needs = [
        need(1, mounted_but_suspect, copy("b", "B1")),
        need(2, copy("a", "A2", healthy=False)),
    ]
    plan = plan_recall(needs, (SiteView("a", 1, mounted=frozenset({"A1"})), B))
    chosen = {r.version_id: r.copy for v in plan.visits for r in v.reads}
    assert chosen[1].barcode == "B1"
    assert chosen[2].barcode == "A2" and not chosen[2].healthy


def test_an_unhealthy_copy_serves_when_the_healthy_one_is_excluded() -> None:
    good, weak = copy("b", "B1"), copy("a", "A1", healthy=False)
    plan = plan_recall([need(1, good, weak)], SITES, exclude=[good.copy_id])
    assert plan.visits[0].reads == (Read(1, weak),)


def test_versions_with_no_usable_copy_are_reported() -> None:
    gone = copy("a", "A1")
    needs = [
        need(3, gone),
        need(1),  # no copy catalogued at all
        need(2, copy("c", "C1")),  # at a site the caller did not describe
        need(4, copy("b", "B1")),
    ]
    plan = plan_recall(needs, SITES, exclude={gone.copy_id})
    assert plan.unreadable == (1, 2, 3)
    assert versions(plan) == [4]


def test_an_empty_batch_plans_nothing() -> None:
    plan = plan_recall([], SITES)
    assert plan == RecallPlan((), ())
    assert (plan.mounts, plan.bytes, plan.by_site()) == (0, 0, {})


def _random_batch(seed: int) -> list[TarNeed]:
    rng = random.Random(seed)
    needs = []
    for v in range(200):
        needs.append(
            need(
                v,
                copy("a", f"A{rng.randrange(40):02d}", rng.randrange(10_000)),
                copy("b", f"B{rng.randrange(40):02d}", rng.randrange(10_000)),
            )
        )
    # Some requests repeat an earlier version, and arrive in no particular order.
    needs += rng.sample(needs, 30)
    rng.shuffle(needs)
    return needs


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_every_need_is_read_exactly_once_on_one_visit_per_cartridge(seed: int) -> None:
    needs = _random_batch(seed)
    sites = (
        SiteView("a", 2, mounted=frozenset({"A00", "A01"})),
        SiteView("b", 3, mounted=frozenset({"B05"})),
    )
    plan = plan_recall(needs, sites)

    assert Counter(versions(plan)) == Counter(range(200))
    distinct = {(c.site, c.barcode) for n in needs for c in n.copies}
    assert len(plan.visits) <= len(distinct)
    assert max(Counter(v.barcode for v in plan.visits).values()) == 1
    for visit in plan.visits:
        assert {(r.copy.site, r.copy.barcode) for r in visit.reads} == {(visit.site, visit.barcode)}
        blocks = [r.copy.start_block or 0 for r in visit.reads]
        assert blocks == sorted(blocks)
        assert visit.mounted == (visit.barcode in {"A00", "A01", "B05"})
    assert {"a", "b"} <= plan.by_site().keys()
    assert plan.unreadable == ()

    baseline = plan_first_come(needs, sites)
    assert len(baseline.visits) == len(needs)
    assert plan.mounts < baseline.mounts
    assert plan.bytes < baseline.bytes  # the repeats are read once


def test_first_come_serves_each_need_alone_from_the_first_site() -> None:
    mounted_b = SiteView("b", 1, mounted=frozenset({"B1"}))
    needs = [
        need(1, copy("b", "B1", 1), copy("a", "A1", 1)),
        need(2, copy("b", "B1", 2), copy("a", "A1", 2)),
        need(1, copy("b", "B1", 1), copy("a", "A1", 1)),
        need(3, copy("a", "A2", healthy=False), copy("b", "B3")),
    ]
    plan = plan_first_come(needs, (A, mounted_b))
    assert len(plan.visits) == len(needs)
    assert cartridges(plan) == [("a", "A1"), ("a", "A1"), ("a", "A1"), ("b", "B3")]
    assert versions(plan) == [1, 2, 1, 3]
    assert plan.mounts == 4


def test_first_come_skips_what_cannot_be_read() -> None:
    gone = copy("a", "A1")
    needs = [need(1, gone, copy("b", "B1")), need(2, copy("a", "A2")), need(3)]
    plan = plan_first_come(needs, (SiteView("a", 1, down=True), B), exclude={gone.copy_id})
    assert cartridges(plan) == [("b", "B1")]
    assert plan.unreadable == (2, 3)
