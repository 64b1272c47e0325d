"""The dashboard: what is in the safe, and what needs a person.

Everything is the viewer's tenant's (an admin's: every tenant's), read with
the functions ``status``, the API and monitoring use: SIP counts, rejected
SIPs with their reports, and the parts of :mod:`preservation.attention`
(stuck SIPs, failed copies, bags set aside, disposals waiting for a second
curator, sites, audits). Each is a grouped count, or a short list beside the
count of the whole ("the 50 newest of 1,234"), so the page costs the same at
100,000 AIPs as at ten.

Audit coverage is the exception: it reads every active version to find the
ones missing a copy, so it is its own fragment (``/console/dashboard/coverage``),
loaded after the page by htmx and reached by a plain link without JavaScript.
Audits in progress poll their own fragment until they finish.
"""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from preservation import attention, dispatch, lookup
from preservation.api.deps import Ctx, Db, actor_of
from preservation.audit import runs
from preservation.audit.coverage import coverage
from preservation.catalog import service
from preservation.catalog.database import session_scope
from preservation.catalog.models import CartridgeState, Role, SIPState
from preservation.console import render
from preservation.console.deps import Viewer, needs
from preservation.console.deps import router as console_router
from preservation.console.i18n import gettext as _
from preservation.errors import InvalidRequestError
from preservation.sips import INTERRUPTED, RUNNING
from preservation.tokens import Principal

router = console_router()
Curator = Annotated[Principal, Depends(needs(Role.CURATOR))]

#: Rejected SIPs and set-aside bags listed on the page (the count beside them is complete).
REJECTED_LISTED = 10
#: Seconds between two polls of an audit in progress.
POLL_SECONDS = 2


def state_labels() -> dict[str, str]:
    """SIP, AIP, cartridge and audit states in the viewer's language."""
    return {
        "received": _("received"),
        "validated": _("validated"),
        "staged": _("staged"),
        "scanned": _("scanned"),
        "identified": _("identified"),
        "characterised": _("characterised"),
        "described": _("described"),
        "packaged": _("packaged"),
        "stored": _("stored"),
        "committed": _("committed"),
        "rejected": _("rejected"),
        "failed": _("failed"),
        "pending": _("pending"),
        "active": _("active"),
        "discarded": _("discarded"),
        "disposed": _("disposed of"),
        "scratch": _("scratch"),
        "filling": _("filling"),
        "full": _("full"),
        "suspect": _("suspect"),
        "retired": _("retired"),
        "queued": _("queued"),
        "running": _("running"),
        "done": _("done"),
    }


def stage_labels() -> dict[str, str]:
    """The ingest stages a SIP's ``stage`` names (``runner.STAGES``), in the viewer's language."""
    return {
        "validate": _("validation"),
        "scan": _("virus scan"),
        "identify": _("format identification"),
        "characterise": _("characterisation"),
        "describe": _("descriptive metadata"),
        "package": _("packaging"),
        "store": _("writing to tape"),
        "store_all": _("writing to tape"),
        "commit": _("commit to the catalogue"),
        "discard": _("discarding"),
    }


def stage_label(stage: str | None, labels: dict[str, str]) -> str:
    """A SIP's stage as a person reads it: ``store:site-a (interrupted)`` is "writing to
    tape at site-a".

    Whether the runner died is the ``interrupted`` badge beside it; a stage
    that is a SIP state (``set_sip_state`` writes those) reads as the state.
    """
    name = (stage or "").removesuffix(INTERRUPTED).removesuffix(RUNNING)
    base, _sep, site = name.partition(":")
    label = labels.get(base, base)
    return _("%(stage)s at %(site)s") % {"stage": label, "site": site} if site else label


def severity_labels() -> dict[str, str]:
    """A validation report's severities; error and warning are badges, the rest words."""
    return {
        "error": _("error"),
        "warning": _("warning"),
        "info": _("information"),
        "notice": _("notice"),
    }


def _common(viewer: Principal) -> dict[str, Any]:
    return {
        "section": "dashboard",
        "states": state_labels(),
        "severities": severity_labels(),
        "can_audit": viewer.role.allows(Role.CURATOR),
        "poll": POLL_SECONDS,
    }


@router.get("/")
def dashboard(request: Request, ctx: Ctx, db: Db, viewer: Viewer) -> Response:
    tenant = viewer.tenant_id
    sip_counts = service.count_sips_by_state(db, tenant)
    failed_count, failed = attention.failed_copies(db, tenant)
    disposal_count, disposals = attention.waiting_disposals(db, tenant)
    active_audits, audits = attention.audits(db, tenant)
    context = {
        **_common(viewer),
        "sip_states": [s.value for s in SIPState],
        "sip_counts": sip_counts,
        "aip_counts": attention.aip_counts(db, tenant),
        "rejected": lookup.list_sip_views(
            db, tenant, state=SIPState.REJECTED, limit=REJECTED_LISTED
        ).items,
        "rejected_count": sip_counts.get(SIPState.REJECTED.value, 0),
        "set_aside": attention.set_aside_bags(
            ctx.settings.ingest_dir, tenant, limit=REJECTED_LISTED
        ),
        "stuck": attention.stuck_sips(db, tenant),
        "stuck_count": attention.count_stuck_sips(db, tenant),
        "stage_label": partial(stage_label, labels={**state_labels(), **stage_labels()}),
        "failed_count": failed_count,
        "failed": failed,
        "disposals": disposals,
        "disposal_count": disposal_count,
        "sites": attention.site_views(db, ctx.settings),
        "cartridge_states": [s.value for s in CartridgeState],
        "site_names": list(ctx.settings.sites),
        "audits": audits,
        "active_audits": active_audits,
        "active_listed": sum(a.state in ("queued", "running") for a in audits),
    }
    return render.page(request, "dashboard.html", context)


@router.get("/dashboard/coverage")
async def audit_coverage(request: Request, ctx: Ctx, viewer: Viewer) -> Response:
    """Per site: copies checked within their tenant's interval, and the overdue ones."""
    report = await run_in_threadpool(coverage, ctx, tenant=viewer.tenant_id)
    context = {
        **_common(viewer),
        "coverage": report,
        "overdue": sum(s.overdue_copies for s in report.sites),
        "missing": sum(len(s.missing) for s in report.sites),
        "listed": [(s.site, o) for s in report.sites for o in s.overdue],
    }
    if render.is_htmx(request):
        return render.page(request, "dashboard/_coverage.html", context)
    return render.page(request, "dashboard/coverage.html", context)


@router.get("/dashboard/audits/{audit_id}")
def audit_progress(request: Request, db: Db, viewer: Viewer, audit_id: str) -> Response:
    """One audit's progress: the polling fragment for htmx, a small page without it."""
    audit = runs.get_audit(db, audit_id, viewer.tenant_id)
    context = {**_common(viewer), "audit": audit}
    if render.is_htmx(request):
        return render.page(request, "dashboard/_audit.html", context)
    return render.page(request, "dashboard/audit.html", context)


@router.post("/dashboard/audits")
async def start_audit(request: Request, ctx: Ctx, viewer: Curator) -> Response:
    """Start a fixity audit as ``POST /api/v1/audits`` does: queued, then handed to a runner.

    A mistake in the form (an unknown site, a bad number) is the 400 error page
    without htmx; with htmx it is a notice beside the form, sent with a 200 and
    ``HX-Retarget`` (htmx swaps no error response, and the audit list is no
    place for it), so the person sees why nothing started.
    """
    form = await request.form()
    site = str(form.get("site") or "").strip() or None
    raw_max = str(form.get("max_cartridges") or "").strip()

    def start() -> runs.AuditView:
        with session_scope(ctx.sessions) as s:
            return runs.start_audit(
                s,
                tuple(ctx.settings.sites),
                viewer.tenant_id,
                actor_of(viewer).who,
                site=site,
                max_cartridges=int(raw_max) if raw_max else None,
            )

    try:
        if raw_max and (not raw_max.isdigit() or not 1 <= int(raw_max) <= 1_000_000):
            raise InvalidRequestError(
                _("The number of cartridges must be a whole number from 1 to 1,000,000."),
                rule="audit-bounds",
                field="max_cartridges",
            )
        view = await run_in_threadpool(start)
    except InvalidRequestError as err:
        if not render.is_htmx(request):
            raise
        refused = render.page(
            request, "dashboard/_audit_refused.html", {"message": _audit_refusal(err, site)}
        )
        refused.headers["HX-Retarget"] = "#audit-refused"
        refused.headers["HX-Reswap"] = "innerHTML"
        return refused
    dispatch.submit_audit(ctx, view.audit_id)
    if render.is_htmx(request):
        return render.page(
            request, "dashboard/_audit_started.html", {**_common(viewer), "audit": view}
        )
    return RedirectResponse("/console/#audits", status_code=303)


def _audit_refusal(err: InvalidRequestError, site: str | None) -> str:
    """Why the audit did not start, in the viewer's language where the rule is ours to say."""
    if err.context.get("rule") == "site" and site:
        return _("There is no site %(site)s: choose one of the list.") % {"site": site}
    return err.message
