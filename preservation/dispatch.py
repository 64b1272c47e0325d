"""Hand long work to whoever runs it: the Celery workers, or this process.

The API must answer at once (202) while a SIP is ingested, a version
written to tape or an audit read back. With a broker configured, the work is
handed to the workers through the dotted-path submitters in the settings
(the library never imports ``workers/``). On the embedded default there is
no one else, so it runs on a small thread pool kept in the context: the
same stage functions, in the API's own process, one job at a time by
default so two ingests never fight over the tape drives.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from preservation.context import Context

__all__ = ["run_in_background", "submit_audit", "submit_dip", "submit_sip", "submit_version"]

log = logging.getLogger("preservation.dispatch")
_POOL = "dispatch.pool"


def run_in_background(ctx: Context, what: str, fn: Callable[[], Any]) -> Future[Any]:
    """Run ``fn`` on the context's embedded pool; errors are logged, never lost silently."""
    pool = ctx.cache.get(_POOL)
    if pool is None:
        pool = ctx.cache[_POOL] = ThreadPoolExecutor(
            max_workers=max(1, ctx.settings.api_embedded_workers),
            thread_name_prefix="embedded",
        )

    def guarded() -> Any:
        try:
            return fn()
        except Exception:
            log.exception("embedded %s failed", what)
            raise

    return pool.submit(guarded)


def shutdown(ctx: Context, *, wait: bool = True) -> None:
    pool = ctx.cache.pop(_POOL, None)
    if pool is not None:
        pool.shutdown(wait=wait, cancel_futures=not wait)


def submit_sip(ctx: Context, sip_id: str) -> None:
    """Start a registered SIP's ingest: the workers' workflow, or the in-process stages."""
    if ctx.settings.broker_url:
        from preservation.submission import load_submitter

        load_submitter(ctx.settings)(sip_id)
        return
    from preservation.errors import TransientError
    from preservation.ingest import open_sites, run_sip

    def work() -> None:
        open_sites(ctx)
        try:
            run_sip(ctx, sip_id)
        except TransientError as err:  # left pending, as `ingest` leaves it; resume finishes
            log.warning("SIP %s left pending: %s", sip_id, err.message)

    run_in_background(ctx, f"ingest of SIP {sip_id}", work)


def submit_version(ctx: Context, version_id: int) -> None:
    from preservation import versions

    if ctx.settings.broker_url:
        versions.submit_version(ctx, version_id)
        return
    run_in_background(
        ctx, f"AIP version {version_id}", lambda: versions.run_version(ctx, version_id)
    )


def submit_audit(ctx: Context, audit_id: str) -> None:
    from preservation.audit import runs

    if ctx.settings.broker_url:
        runs.submit_to_workers(ctx, audit_id)
        return
    run_in_background(ctx, f"audit {audit_id}", lambda: runs.run_audit(ctx, audit_id))


def submit_dip(ctx: Context, dip_id: str, *, delay: float | None = None) -> None:
    """A queued DIP request's batch, after the window that lets others join it.

    With workers, a task on the ``access`` queue, due when the window ends.
    Embedded, a timer (not a pool thread: waiting must not hold up ingests)
    puts the batch on the pool when the window ends; a batch that finds the
    request already taken by an earlier one has nothing to do.
    """
    if ctx.settings.broker_url:
        from preservation.submission import load_callable

        load_callable(ctx.settings.dip_submitter, "dip_submitter")(dip_id)
        return
    import threading

    from preservation.access.recall import run_batch

    def batch() -> None:
        report = run_batch(ctx)
        if report.requeued:  # drives busy or a site down: one more batch, after the backoff
            submit_dip(ctx, report.requeued[0], delay=report.retry_after)

    def start() -> None:
        run_in_background(ctx, f"recall batch for DIP {dip_id}", batch)

    wait = ctx.settings.recall_window_seconds if delay is None else delay
    timer = threading.Timer(max(0.0, wait), start)
    timer.name = f"dip-window-{dip_id[:8]}"
    timer.daemon = True
    timer.start()


def resume_dips(ctx: Context) -> None:
    """At start-up: requests a stopped process left queued or half-served get a batch."""
    from preservation.access.recall import waiting

    if not ctx.read_only and waiting(ctx):
        submit_dip(ctx, "waiting")
