"""The runner: every stage of a SIP in order, in this process, and one stage by name.

Each stage reads its inputs from the catalogue and the staging area, does its
work, and commits its result and its PREMIS events in one transaction before
the next stage starts. Run again after a crash, a stage either finds its work
done (and returns) or redoes it from scratch: partial output is never trusted.
The CLI runs the stages in-process; Celery tasks call the same functions by name
(:func:`run_stage`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from preservation.catalog import SIPState, service
from preservation.catalog.database import session_scope
from preservation.context import Context
from preservation.errors import (
    InvalidSIPError,
    PreservationError,
    SIPBusyError,
    TransientError,
)
from preservation.ingest.characterise import characterise
from preservation.ingest.commit import commit
from preservation.ingest.describe import describe
from preservation.ingest.identify import identify
from preservation.ingest.package import package
from preservation.ingest.receive import receive
from preservation.ingest.reject import problem_from_error
from preservation.ingest.scan import scan
from preservation.ingest.staging import (
    Progress,
    no_progress,
)
from preservation.ingest.store import store, store_all
from preservation.ingest.validate import validate

log = logging.getLogger("preservation.ingest")


@dataclass
class IngestResult:
    sip_id: str
    state: str
    aip_id: str | None = None
    rejected_to: str | None = None
    problems: list[dict[str, Any]] = field(default_factory=list)
    # The validate stage's warnings (rule, message, ...), e.g. "duplicate-payload".
    warnings: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    error: str | None = None  # why the run stopped short, when it did

    def to_dict(self) -> dict[str, Any]:
        return {
            "sip_id": self.sip_id,
            "state": self.state,
            "aip_id": self.aip_id,
            "rejected_to": self.rejected_to,
            "error": self.error,
            "problems": self.problems,
            "warnings": self.warnings,
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
        }


# -- the whole ingest, in-process -------------------------------------------------------------

STAGES: list[tuple[str, Callable[..., None]]] = [
    ("validate", validate),
    ("scan", scan),
    ("identify", identify),
    ("characterise", characterise),
    ("describe", describe),
    ("package", package),
    ("store_all", store_all),
    ("commit", commit),
]
STAGE_FUNCTIONS: dict[str, Callable[..., None]] = dict(STAGES) | {
    "store": store,
    "store_all": store_all,
}
# The stages that tell their progress file by file.
_WITH_PROGRESS = frozenset({"validate", "identify", "characterise"})


def _log_stage(sip_id: str, stage: str, started: float, outcome: str, **extra: Any) -> None:
    """One structured line per stage per SIP (JSON, for the log shipper)."""
    record = {
        "sip": sip_id,
        "stage": stage,
        "outcome": outcome,
        "seconds": round(time.perf_counter() - started, 4),
        **extra,
    }
    log.info(json.dumps(record, ensure_ascii=False))


def run_stage(ctx: Context, name: str, sip_id: str, *args: Any) -> None:
    """Run one stage by name under the SIP's lease, recording where a failure happened.

    The lease (preservation/lease.py) keeps a duplicate message from running
    the stage beside the first; one site's tape write has its own, so the two
    sites still write in parallel.
    """
    from preservation.lease import hold_sip_lease
    from preservation.monitoring import record_stage_run

    part = f"store:{args[0]}" if name == "store" and args else ""
    started = time.perf_counter()
    try:
        with hold_sip_lease(
            ctx.sessions,
            sip_id,
            seconds=ctx.settings.lease_seconds,
            part=part,
            stage=f"{part or name} (running)",  # `status` shows the stage at work
        ):
            STAGE_FUNCTIONS[name](ctx, sip_id, *args)
        _clear_error_of_earlier_stage(ctx, sip_id, name, part)
        _log_stage(sip_id, name, started, "done")
        record_stage_run(ctx, name, time.perf_counter() - started, "done")
    except InvalidSIPError:
        _log_stage(sip_id, name, started, "rejected")
        record_stage_run(ctx, name, time.perf_counter() - started, "rejected")
        raise
    except SIPBusyError:
        _log_stage(sip_id, name, started, "busy")
        raise
    except Exception as err:
        _log_stage(sip_id, name, started, "failed", error=f"{type(err).__name__}: {err}")
        record_stage_run(ctx, name, time.perf_counter() - started, "failed")
        with session_scope(ctx.sessions) as s:
            sip = service.get_sip(s, sip_id)
            sip.stage = part or name
            # Prefixed with the stage, which `stage` itself does not keep (the next
            # runner's "(running)" overwrites it): see _clear_error_of_earlier_stage.
            sip.last_error = f"{part or name}: {type(err).__name__}: {err}"
            sip.attempts = (sip.attempts or 0) + 1
        raise


_STAGE_ORDER = {name: n for n, (name, _) in enumerate(STAGES)} | {"store": len(STAGES) - 2}


def _clear_error_of_earlier_stage(ctx: Context, sip_id: str, name: str, part: str) -> None:
    """A stage that succeeds makes an earlier stage's error history, not news.

    Only errors of this stage or earlier ones are cleared: one site's store
    succeeding says nothing about the other site's failure (``store:site-a``
    is not ``store:site-b``), which stays until that site's store or the
    commit succeeds.
    """
    with session_scope(ctx.sessions) as s:
        sip = service.get_sip(s, sip_id)
        if not sip.last_error:
            return
        failed = sip.last_error.split(": ", 1)[0]
        base = failed.split(":", 1)[0]
        if (
            failed == (part or name)
            or _STAGE_ORDER.get(base, -1) < _STAGE_ORDER[name]
            or (name == "store_all" and base == "store")
        ):
            sip.last_error = None


def open_sites(ctx: Context) -> None:
    """Open the tape sites before a SIP is received, when this process will write them.

    A site that cannot be used as it is (written cartridges beside an empty
    catalogue: ``DataRootError``) then refuses the ingest at the door, rather
    than leave a SIP stuck short of its store stage. A site that is down is
    not refused here: the SIP waits for it, pending.
    """
    from preservation.storage.sites import get_site

    for site in ctx.settings.sites:
        get_site(ctx, site)


def run_ingest(
    ctx: Context,
    path: Path,
    *,
    tenant: str,
    progress: Progress = no_progress,
    wait_seconds: float | None = None,
) -> IngestResult:
    """The embedded default: every stage in this process, one after the other."""
    t0 = time.perf_counter()
    open_sites(ctx)
    sip_id = receive(ctx, path, tenant=tenant)
    result = run_sip(ctx, sip_id, progress=progress, wait_seconds=wait_seconds)
    result.timings["receive"] = time.perf_counter() - t0 - result.timings["total"]
    result.timings["total"] = time.perf_counter() - t0
    return result


def run_sip(
    ctx: Context,
    sip_id: str,
    *,
    progress: Progress = no_progress,
    wait_seconds: float | None = None,
) -> IngestResult:
    """Every remaining stage of a SIP, in this process.

    A transient failure (a site down, a drive busy) is retried with backoff
    for up to ``wait_seconds`` (default: the ``site_wait_seconds`` setting),
    the waits shown through ``progress`` as ``("waiting", seconds, 0)``. If
    it outlasts that, the SIP is left where it stands, pending, and the error
    is raised: an AIP with one copy is never called safe. Running this again
    (``preservation resume``, ``watch``, ``repair``) finishes it.
    """
    budget = ctx.settings.site_wait_seconds if wait_seconds is None else wait_seconds
    t0 = time.perf_counter()
    result = IngestResult(sip_id=sip_id, state=SIPState.RECEIVED.value)
    # Held from the first stage to the last, waits for a site included: this
    # runner is alive all along, and `sip discard` must refuse rather than end
    # the SIP under it between two attempts.
    from preservation.lease import hold_sip_lease

    with hold_sip_lease(ctx.sessions, sip_id, seconds=ctx.settings.lease_seconds, part="run"):
        _warm_up_if_needed(ctx, sip_id)
        for name, _fn in STAGES:
            t = time.perf_counter()
            delay = 1.0
            try:
                while True:
                    try:
                        if name in _WITH_PROGRESS:
                            run_stage(ctx, name, sip_id, progress)
                        else:
                            run_stage(ctx, name, sip_id)
                        break
                    except TransientError as err:
                        waited = time.perf_counter() - t
                        if waited + delay > budget:
                            raise
                        log.warning(
                            json.dumps(
                                {
                                    "sip": sip_id,
                                    "stage": name,
                                    "waiting_s": delay,
                                    "because": err.message,
                                }
                            )
                        )
                        progress("waiting", int(delay), 0)
                        time.sleep(delay)
                        delay = min(delay * 2, 60.0)
            except InvalidSIPError as err:
                result.problems = [
                    p.to_dict() if hasattr(p, "to_dict") else dict(p) for p in err.problems
                ] or [problem_from_error(err)]
                break
            finally:
                result.timings[name] = time.perf_counter() - t
    final = result_of(ctx, sip_id)
    final.problems = result.problems
    final.timings = result.timings
    final.timings["total"] = time.perf_counter() - t0
    return final


def _warm_up_if_needed(ctx: Context, sip_id: str) -> None:
    """Start the identification workers and the format tools while the bag is validated.

    Their start is most of a cold ingest's identify and characterise stages;
    begun now, it runs beside validation and the virus scan instead of after.
    """
    from preservation.warmup import warm_up_context

    with session_scope(ctx.sessions) as s:
        state = service.get_sip(s, sip_id).state
    if state in (SIPState.RECEIVED, SIPState.STAGED, SIPState.SCANNED, SIPState.IDENTIFIED):
        warm_up_context(ctx)


def pending_sips(ctx: Context, tenant: str | None = None) -> list[str]:
    """SIPs neither committed nor rejected: in flight, or waiting for a site."""
    with session_scope(ctx.sessions) as s:
        return [
            sip.id
            for sip in service.list_sips(s, tenant_id=tenant, limit=100_000)
            if sip.state not in (SIPState.COMMITTED, SIPState.REJECTED)
        ]


def resume(
    ctx: Context, sip_ids: list[str] | None = None, *, wait_seconds: float = 0.0
) -> list[IngestResult]:
    """Run the remaining stages of the given (default: every pending) SIP, in this process.

    Each stage finds its work done or redoes it, so resuming a SIP that
    another runner is working on only waits for its lease. A SIP still
    waiting for a site stays pending; its error is in ``status``.
    """
    out = []
    for sip_id in sip_ids if sip_ids is not None else pending_sips(ctx):
        try:
            out.append(run_sip(ctx, sip_id, wait_seconds=wait_seconds))
        except TransientError as err:
            result = result_of(ctx, sip_id)
            result.error = err.message
            out.append(result)
        except Exception as err:  # noqa: BLE001 - one broken SIP must not stop the others
            log.exception("resume: SIP %s failed", sip_id)
            try:
                result = result_of(ctx, sip_id)
            except PreservationError:
                result = IngestResult(sip_id=sip_id, state="unknown")
            message = err.message if isinstance(err, PreservationError) else str(err)
            result.error = f"{type(err).__name__}: {message}"
            out.append(result)
    return out


TERMINAL_STATES = frozenset({SIPState.COMMITTED.value, SIPState.REJECTED.value})


def result_of(ctx: Context, sip_id: str) -> IngestResult:
    """Where a SIP stands, from the catalogue (for callers that did not run it)."""
    with session_scope(ctx.sessions) as s:
        sip = service.get_sip(s, sip_id)
        result = IngestResult(sip_id=sip_id, state=sip.state.value, aip_id=sip.aip_id)
        if sip.state is SIPState.REJECTED:
            result.rejected_to = (sip.last_error or "").rsplit("report in ", 1)[-1]
            report = Path(result.rejected_to) / "report.json"
            if report.is_file():
                result.problems = json.loads(report.read_text()).get("problems", [])
        result.warnings = _validation_warnings(ctx, sip_id)
        return result


def _validation_warnings(ctx: Context, sip_id: str) -> list[dict[str, Any]]:
    """The warnings recorded for a SIP in its validation events (validate's, identify's)."""
    found: list[dict[str, Any]] = []
    with session_scope(ctx.sessions) as s:
        for ev in service.list_events(s, sip_id=sip_id):
            if ev.type == "validation" and ev.outcome == "warning" and ev.outcome_detail:
                found += json.loads(ev.outcome_detail)
    return found
