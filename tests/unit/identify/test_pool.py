"""The worker pool: all files, in order, in batches, with a per-file time limit."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from preservation.errors import ConfigurationError
from preservation.identify import FidoEngine, IdentificationPool, identify_files
from tests.unit.identify.fakes import ENGINE as FAKE


def _files(tmp_path: Path, names: list[str]) -> list[Path]:
    paths = [tmp_path / name for name in names]
    for path in paths:
        path.write_bytes(b"x")
    return paths


def test_fido_in_workers_matches_in_process_in_input_order(samples: dict[str, Path]) -> None:
    paths = list(samples.values()) * 4
    random.Random(3).shuffle(paths)
    with IdentificationPool("fido", workers=2, batch_size=5) as pool:
        results = pool.identify(paths)
        stats = pool.stats
    assert [r.path for r in results] == paths
    reference = {r.path: r for r in FidoEngine().identify_batch(list(samples.values()))}
    assert [(r.puids, r.basis) for r in results] == [
        (reference[p].puids, reference[p].basis) for p in paths
    ]
    # batches, not files: ~100 files in batches of 5 over 2 processes, one load each
    assert len(stats) == 2
    assert sum(s.files for s in stats) == len(paths)
    assert sum(s.batches for s in stats) == -(-len(paths) // 5)  # the last one may be short
    assert all(s.signature_loads == 1 for s in stats)


def test_pool_is_reusable_without_reloading(samples: dict[str, Path]) -> None:
    paths = list(samples.values())
    with IdentificationPool("fido", workers=1) as pool:
        first = pool.identify(paths)
        second = pool.identify(paths[::-1])
        assert len(pool.stats) == 1 and pool.stats[0].signature_loads == 1
    assert [r.puids for r in second] == [r.puids for r in first][::-1]


def test_slow_file_times_out_and_its_batch_goes_on(tmp_path: Path) -> None:
    paths = _files(tmp_path, ["a", "b", "slow-1", "c", "slow-2", "d"])
    started = time.monotonic()
    with IdentificationPool(FAKE, workers=1, timeout=0.3, batch_size=len(paths)) as pool:
        results = pool.identify(paths)
        stats = pool.stats
    assert time.monotonic() - started < 20
    assert [r.path for r in results] == paths
    by_name = {r.path.name: r for r in results}
    for name in ("slow-1", "slow-2"):
        assert not by_name[name].known
        assert by_name[name].error == "timeout after 0.3s"
        assert by_name[name].basis == "none"
        assert by_name[name].engine == "fake"
        assert by_name[name].signature_release == "fake-signatures-1"
    assert all(by_name[n].puids == ("fake/1",) for n in "abcd")
    # the worker's own alarm handled it: one process, one batch, nothing killed
    assert len(stats) == 1 and not stats[0].killed and stats[0].batches == 1


def test_engine_that_ignores_the_alarm_is_killed_and_the_rest_goes_on(tmp_path: Path) -> None:
    paths = _files(tmp_path, ["a", "stuck", "b", "c"])
    with IdentificationPool(FAKE, workers=1, timeout=0.2, batch_size=4) as pool:
        results = pool.identify(paths)
        stats = pool.stats
    assert [r.path for r in results] == paths
    stuck = results[1]
    assert not stuck.known and stuck.error and stuck.error.startswith("timeout after 0.2s")
    assert "killed" in stuck.error
    assert all(r.known for i, r in enumerate(results) if i != 1)
    assert [s.killed for s in stats] == [True, False]  # a fresh worker finished the batch


def test_worker_that_dies_fails_one_file_only(tmp_path: Path) -> None:
    paths = _files(tmp_path, ["a", "crash", "b", "c", "d", "e"])
    results = identify_files(paths, engine_name=FAKE, workers=2, batch_size=3)
    assert [r.known for r in results] == [True, False, True, True, True, True]
    assert results[1].error == "worker process died (exit code 3)"


def test_unknown_engine_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="no-such-engine"):
        identify_files(_files(tmp_path, ["a"]), engine_name="no-such-engine", workers=1)


def test_nothing_to_do_starts_nothing() -> None:
    with IdentificationPool("fido") as pool:
        assert pool.identify([]) == []
        assert pool.stats == []


def test_timeout_must_be_positive() -> None:
    with pytest.raises(ConfigurationError):
        IdentificationPool("fido", timeout=0)
