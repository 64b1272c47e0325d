"""The host feed rate: what a real drive would see of this host, whatever the emulator charges."""

from __future__ import annotations

import itertools

import pytest

from preservation.storage.sites import FEED_WINDOW, FeedMeter, SiteStats

MIB = 1 << 20
CHUNK = 4 * MIB


def _meter(gaps: list[float]) -> FeedMeter:
    """One hand-off per gap (seconds since the previous one), CHUNK bytes each."""
    now = [0.0]
    meter = FeedMeter(clock=lambda: now[0])
    meter.mark(0)
    for n, gap in enumerate(gaps, start=1):
        now[0] += gap
        meter.mark(n * CHUNK)
    return meter


def test_a_stall_inside_a_file_shows_though_the_file_average_hides_it() -> None:
    gaps = [0.01] * 100
    gaps[50] = 1.0  # one second with nothing handed to the drive
    meter = _meter(gaps)
    average = meter.nbytes / meter.seconds
    assert average > 177e6  # a per-file figure would call this streaming
    worst = meter.min_rate()
    assert worst is not None and worst < 177e6
    assert worst == pytest.approx(FEED_WINDOW / (15 * 0.01 + 1.0))  # 16 chunks, one a stall


def test_a_steady_feed_is_its_own_rate_and_a_short_file_is_one_window() -> None:
    steady = _meter([0.01] * 40).min_rate()
    assert steady is not None and abs(steady - CHUNK / 0.01) < 1e-3
    short = _meter([0.02, 0.02])  # 8 MiB, shorter than a window: first to last hand-off
    assert short.min_rate() == pytest.approx(2 * CHUNK / 0.04)
    assert FeedMeter().min_rate() is None and _meter([]).min_rate() is None


def test_site_stats_keep_the_slowest_feed() -> None:
    stats = SiteStats()
    for feed in (300e6, 150e6, None, 250e6):
        stats.record(CHUNK, 0.01, 0.02, feed)
    assert stats.min_host_feed == 150e6 and stats.files_written == 4


def test_meter_marks_are_in_hand_off_order() -> None:
    ticks = itertools.count()
    meter = FeedMeter(clock=lambda: float(next(ticks)))
    for total in (0, CHUNK, 2 * CHUNK):
        meter.mark(total)
    assert meter.marks == [(0.0, 0), (1.0, CHUNK), (2.0, 2 * CHUNK)]
    assert meter.seconds == 2.0 and meter.nbytes == 2 * CHUNK
