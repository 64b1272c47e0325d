"""One AIP, and what a person does with it: the page a curator lives on.

Reading: the versions as a timeline, the files of one version with their
formats and findings, the PREMIS history with its chain and time-stamps, the
copies at each site, retention and holds. Acting: a new descriptive record (a
new version), a DIP, a retention date, a legal hold, a disposal asked for and
approved by a second curator. Every action calls the function the API route
calls, with the viewer as the actor, so the rules (four eyes, holds beating
retention, tenancy) are the service's and are not repeated here.

A refused action (409, 403 from a service rule, 400 from a checked value)
comes back as the AIP page with the service's message on top, not as a bare
error page: the curator sees why next to what they tried.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any

from babel.dates import format_date
from fastapi import Depends, Form, Query, Request
from starlette.datastructures import FormData
from starlette.responses import RedirectResponse, Response

from preservation import dispatch, lookup, retention, versions
from preservation.access import service as dips
from preservation.api.deps import Ctx, Db, actor_of
from preservation.api.problems import STATUS
from preservation.catalog.database import session_scope
from preservation.catalog.models import DisposalState, Role
from preservation.console import i18n, render
from preservation.console.deps import Viewer, needs
from preservation.console.deps import router as console_router
from preservation.console.i18n import gettext as _
from preservation.errors import InvalidRequestError, NotFoundError, PreservationError
from preservation.evidence import stamping
from preservation.evidence.history import history_head
from preservation.metadata.dc_input import dc_from_json
from preservation.metadata.mets import DC_ELEMENTS
from preservation.tokens import Principal

router = console_router()
Curator = Annotated[Principal, Depends(needs(Role.CURATOR))]
Consumer = Annotated[Principal, Depends(needs(Role.CONSUMER))]

#: Files and events shown per page; both are paged by cursor, like the API.
FILES_PER_PAGE = 200
EVENTS_PER_PAGE = 50


def _notice(
    done: str | None,
    summary: lookup.AIPSummary,
    kept: retention.RetentionView,
    disposals: list[retention.DisposalView],
    all_versions: list[lookup.VersionView],
    version: int | None,
) -> str | None:
    """The notice after a redirect, if the AIP as it is now bears it out.

    The query string is anyone's to write, so a link must not make the page
    say that an AIP was disposed of, put on hold or given a new version when it
    was not (admin's notices name only who is on the page, for the same reason).
    """
    active = summary.state == "active"
    if done == "retention" and active:
        if kept.retention_until is None:
            return _("The retention is set: the AIP is kept permanently.")
        day = format_date(kept.retention_until.date(), "long", locale=i18n.current())
        return _("The retention is set: the AIP is kept until %(date)s.") % {"date": day}
    if done == "hold" and kept.on_hold:
        return _("The legal hold was placed.")
    if done == "lifted" and not kept.on_hold and any(h.lifted_at for h in kept.holds):
        return _("The legal hold was lifted.")
    if done == "disposal" and any(d.state == DisposalState.REQUESTED.value for d in disposals):
        return _("The disposal was requested; a second curator must approve it.")
    if done == "approved" and summary.state == "disposed":
        return _("The disposal was approved: the AIP is disposed of.")
    if done == "metadata" and any(
        v.number == version and v.reason == "metadata" for v in all_versions
    ):
        return _("A new version with the new description is being stored.")
    return None


def _dc_labels() -> dict[str, str]:
    return {
        "title": _("Title"),
        "creator": _("Creator"),
        "subject": _("Subject"),
        "description": _("Description"),
        "publisher": _("Publisher"),
        "contributor": _("Contributor"),
        "date": _("Date"),
        "type": _("Type"),
        "format": _("Format"),
        "identifier": _("Identifier"),
        "source": _("Source"),
        "language": _("Language"),
        "relation": _("Relation"),
        "coverage": _("Coverage"),
        "rights": _("Rights"),
    }


def _reason_labels() -> dict[str, str]:
    return {
        "ingest": _("ingest"),
        "migration": _("migration"),
        "metadata": _("metadata"),
    }


def event_type_labels() -> dict[str, str]:
    """The PREMIS event types (the closed list the catalogue accepts), in the viewer's language.

    Every value of :data:`preservation.metadata.model.EVENT_TYPES`, not only the
    ones recorded today: an event added by a later part of the system is named
    too, and the translations test checks the two lists agree.
    """
    return {
        "accession": _("accession"),
        "appraisal": _("appraisal"),
        "capture": _("capture"),
        "compiling": _("compiling"),
        "compression": _("compression"),
        "creation": _("creation"),
        "deaccession": _("deaccession"),
        "decompression": _("decompression"),
        "decryption": _("decryption"),
        "deletion": _("deletion"),
        "digital signature generation": _("digital signature generation"),
        "digital signature validation": _("digital signature validation"),
        "displaying": _("displaying"),
        "dissemination": _("dissemination"),
        "encryption": _("encryption"),
        "execution": _("execution"),
        "exporting": _("exporting"),
        "extraction": _("extraction"),
        "filename change": _("filename change"),
        "fixity check": _("fixity check"),
        "forensic feature analysis": _("forensic feature analysis"),
        "format identification": _("format identification"),
        "imaging": _("imaging"),
        "information package creation": _("information package creation"),
        "information package merging": _("information package merging"),
        "information package splitting": _("information package splitting"),
        "ingestion": _("ingestion"),
        "ingestion end": _("ingestion end"),
        "ingestion start": _("ingestion start"),
        "interpreting": _("interpreting"),
        "message digest calculation": _("message digest calculation"),
        "metadata extraction": _("metadata extraction"),
        "metadata modification": _("metadata modification"),
        "migration": _("migration"),
        "modification": _("modification"),
        "normalization": _("normalization"),
        "packing": _("packing"),
        "policy assignment": _("policy assignment"),
        "printing": _("printing"),
        "quarantine": _("quarantine"),
        "recovery": _("recovery"),
        "redaction": _("redaction"),
        "refreshment": _("refreshment"),
        "rendering": _("rendering"),
        "replication": _("replication"),
        "transfer": _("transfer"),
        "unpacking": _("unpacking"),
        "unquarantine": _("unquarantine"),
        "validation": _("validation"),
        "virus check": _("virus check"),
    }


def outcome_labels() -> dict[str, str]:
    """PREMIS event outcomes; "pending" is a disposal asked for and not yet approved."""
    return {
        "success": _("success"),
        "failure": _("failure"),
        "warning": _("warning"),
        "pending": _("pending"),
    }


def state_labels() -> dict[str, str]:
    """Every state an AIP, copy, disposal, DIP or migration shows, in the viewer's language."""
    return {
        "pending": _("pending"),
        "active": _("active"),
        "discarded": _("discarded"),
        "disposed": _("disposed of"),
        "writing": _("writing"),
        "verified": _("verified"),
        "failed": _("failed"),
        "requested": _("waiting for approval"),
        "queued": _("queued"),
        "recalling": _("recalling from tape"),
        "building": _("building"),
        "ready": _("ready"),
        "expired": _("expired"),
        "running": _("running"),
        "done": _("done"),
        "committed": _("committed"),
        "unchanged": _("unchanged"),
        "converting": _("converting"),
        "migrated": _("migrated"),
        "skipped": _("skipped"),
        "original": _("original"),
        "preservation": _("preservation"),
        "access": _("access"),
    }


def _why_not(kept: retention.RetentionView) -> str | None:
    """Which of the service's reasons keeps the AIP, for a sentence in the viewer's language.

    Read from the facts ``retention.why_not_disposable`` reads, in its order,
    rather than from its English text; a reason none of them explains is
    "other", and the page shows the service's words under a translated lead.
    """
    if kept.why_not is None:
        return None
    if kept.state == "disposed":
        return "disposed"
    if kept.state != "active":
        return "inactive"
    if kept.on_hold:
        return "hold"
    if kept.retention_until is None:
        return "permanent"
    if kept.retention_until > datetime.now(UTC):
        return "kept"
    return "other"


def _refusal(exc: PreservationError) -> list[tuple[str, str]]:
    """The service's reason (English, naming the rule) under a lead in the viewer's language."""
    return [("error", _("Nothing was changed: %(reason)s") % {"reason": exc.message})]


def _status_of(exc: PreservationError) -> int:
    return next((code for cls, code, _t in STATUS if isinstance(exc, cls)), 500)


def _page(
    request: Request,
    ctx: Any,
    db: Any,
    viewer: Principal,
    aip_id: str,
    *,
    version: int | None = None,
    files: str | None = None,
    events: str | None = None,
    done: str | None = None,
    notices: list[tuple[str, str]] | None = None,
    status: int = 200,
) -> Response:
    tenant = viewer.tenant_id
    summary = lookup.aip_summary(db, aip_id, tenant)
    all_versions = lookup.aip_versions(db, summary.aip_id, tenant)
    chosen = version or summary.current_version
    detail = None
    if chosen:
        detail = lookup.version_detail(
            db, summary.aip_id, chosen, tenant, cursor=files, limit=FILES_PER_PAGE
        )
    history = lookup.aip_events(db, summary.aip_id, tenant, cursor=events, limit=EVENTS_PER_PAGE)
    stamps = stamping.event_stamps(db, summary.tenant, [e.seq for e in history.items])
    heads = history_head(ctx, tenant_id=summary.tenant)
    kept = retention.get_retention(db, summary.aip_id, tenant)
    disposals = retention.list_disposals(db, tenant, aip_id=summary.aip_id)
    titles = (summary.descriptive or {}).get("title") or [summary.source_bag_name]
    said = _notice(done, summary, kept, disposals, all_versions, version)
    notices = [*(notices or []), *([("ok", said)] if said else [])]
    context = {
        "section": "search",
        "title": titles[0],
        "aip": summary,
        "versions": all_versions,
        "pending": any(v.committed_at is None for v in all_versions),
        "chosen": chosen,
        "detail": detail,
        "files_cursor": files,
        "history": history,
        "events_cursor": events,
        "stamps": stamps,
        "head": heads[0] if heads else None,
        "tsa": ctx.settings.tsa_url is not None,
        "retention": kept,
        "disposals": disposals,
        "waiting_disposals": [d for d in disposals if d.state == DisposalState.REQUESTED.value],
        "is_curator": viewer.role.allows(Role.CURATOR),
        "why_not": _why_not(kept),
        "reasons": _reason_labels(),
        "states": state_labels(),
        "event_types": event_type_labels(),
        "outcomes": outcome_labels(),
        "dc_labels": _dc_labels(),
        "kinds": dips.KINDS,
        "notices": notices,
    }
    return render.page(request, "aip.html", context, status=status)


def _refused(
    request: Request, ctx: Any, db: Any, viewer: Principal, aip_id: str, exc: PreservationError
) -> Response:
    """The AIP page again, saying why the service refused; a missing AIP stays a 404."""
    if isinstance(exc, NotFoundError):
        raise exc
    db.rollback()
    return _page(request, ctx, db, viewer, aip_id, notices=_refusal(exc), status=_status_of(exc))


def _back(aip_id: str, done: str, *, version: int | None = None) -> RedirectResponse:
    query = f"?done={done}" + (f"&version={version}" if version else "")
    return RedirectResponse(f"/console/aips/{aip_id}{query}", status_code=303)


@router.get("/aips/{aip_id}")
def aip_page(
    request: Request,
    ctx: Ctx,
    db: Db,
    viewer: Viewer,
    aip_id: str,
    version: Annotated[int | None, Query(ge=1, le=1_000_000)] = None,
    files: Annotated[str | None, Query(max_length=40)] = None,
    events: Annotated[str | None, Query(max_length=40)] = None,
    done: Annotated[str | None, Query(max_length=20)] = None,
) -> Response:
    return _page(
        request, ctx, db, viewer, aip_id, version=version, files=files, events=events, done=done
    )


@router.get("/aips/{aip_id}/versions")
def versions_part(request: Request, ctx: Ctx, db: Db, viewer: Viewer, aip_id: str) -> Response:
    """The timeline alone for htmx polling while a version is stored; the page without htmx."""
    summary = lookup.aip_summary(db, aip_id, viewer.tenant_id)  # another tenant's: 404
    if not render.is_htmx(request):
        return RedirectResponse(f"/console/aips/{summary.aip_id}", status_code=303)
    all_versions = lookup.aip_versions(db, summary.aip_id, viewer.tenant_id)
    return render.page(
        request,
        "aip/_versions.html",
        {
            "aip": summary,
            "versions": all_versions,
            "pending": any(v.committed_at is None for v in all_versions),
            "chosen": summary.current_version,
            "reasons": _reason_labels(),
        },
    )


# -- descriptive metadata -----------------------------------------------------------------


@router.get("/aips/{aip_id}/metadata")
def metadata_form(request: Request, db: Db, viewer: Curator, aip_id: str) -> Response:
    summary = lookup.aip_summary(db, aip_id, viewer.tenant_id)
    record = summary.descriptive or {}
    values = {element: "\n".join(record.get(element, [])) for element in DC_ELEMENTS}
    return _metadata_page(request, summary, values)


def _metadata_page(
    request: Request,
    summary: lookup.AIPSummary,
    values: dict[str, str],
    *,
    notices: list[tuple[str, str]] | None = None,
    status: int = 200,
) -> Response:
    return render.page(
        request,
        "aip/metadata.html",
        {
            "section": "search",
            "aip": summary,
            "elements": DC_ELEMENTS,
            "values": values,
            "dc_labels": _dc_labels(),
            "notices": notices or [],
        },
        status=status,
    )


async def _form(request: Request) -> FormData:
    """The posted form, read once (starlette keeps it on the request, where the CSRF check
    found it), so the route reading it can be a plain function in the thread pool."""
    return await request.form()


Posted = Annotated[FormData, Depends(_form)]
#: A posted text field; a missing one is empty, and the service says what it needs.
FormText = Annotated[str, Form()]


@router.post("/aips/{aip_id}/metadata")
def save_metadata(
    request: Request, ctx: Ctx, db: Db, viewer: Curator, aip_id: str, form: Posted
) -> Response:
    """One value per line for each element; the record becomes the AIP's next version."""
    values = {element: str(form.get(element) or "") for element in DC_ELEMENTS}
    document = {
        element: [line.strip() for line in text.splitlines() if line.strip()]
        for element, text in values.items()
    }
    try:
        record = dc_from_json({k: v for k, v in document.items() if v})
        info = versions.prepare_metadata_version(
            ctx, aip_id, record, tenant_id=viewer.tenant_id, who=actor_of(viewer).who
        )
    except PreservationError as exc:
        if isinstance(exc, NotFoundError):
            raise
        summary = lookup.aip_summary(db, aip_id, viewer.tenant_id)
        return _metadata_page(
            request, summary, values, notices=_refusal(exc), status=_status_of(exc)
        )
    dispatch.submit_version(ctx, info.version_id)
    return _back(info.aip_id, "metadata", version=info.number)


# -- DIP ------------------------------------------------------------------------------------


@router.post("/aips/{aip_id}/dip")
def ask_dip(
    request: Request,
    ctx: Ctx,
    db: Db,
    viewer: Consumer,
    aip_id: str,
    kind: FormText = "preservation",
    files: FormText = "",
) -> Response:
    try:
        with session_scope(ctx.sessions) as s:
            view = dips.request_dip(
                s,
                aip_id=lookup.check_uuid(aip_id, field="aip_id"),
                tenant_id=viewer.tenant_id,
                kind=kind or "preservation",
                files_glob=files.strip() or None,
                requested_by=actor_of(viewer).label,
                cache_bytes=ctx.settings.dip_cache_bytes,
            )
    except PreservationError as exc:
        return _refused(request, ctx, db, viewer, aip_id, exc)
    # After the commit: the batch must find the row.
    dispatch.submit_dip(ctx, view.dip_id)
    return RedirectResponse(f"/console/dips?asked={view.dip_id}#dip-{view.dip_id}", status_code=303)


# -- retention, holds, disposal -----------------------------------------------------------
#
# Plain functions: FastAPI runs them in its thread pool, so the session's queries and the
# disposal's deletes never hold up the event loop (nor does the AIP page a refusal renders).


@router.post("/aips/{aip_id}/retention")
def change_retention(
    request: Request,
    ctx: Ctx,
    db: Db,
    viewer: Curator,
    aip_id: str,
    until: FormText = "",
    period: FormText = "",
) -> Response:
    until_text = until.strip()
    try:
        day = None
        if until_text:
            try:
                day = date.fromisoformat(until_text)
            except ValueError as err:
                raise InvalidRequestError(
                    f"{until_text[:40]!r} is not a date (YYYY-MM-DD)", rule="date", field="until"
                ) from err
        retention.set_retention(
            db,
            aip_id,
            viewer.tenant_id,
            actor_of(viewer),
            until=day,
            period=period.strip() or None,
        )
    except PreservationError as exc:
        return _refused(request, ctx, db, viewer, aip_id, exc)
    return _back(aip_id, "retention")


@router.post("/aips/{aip_id}/hold")
def place_hold(
    request: Request, ctx: Ctx, db: Db, viewer: Curator, aip_id: str, reason: FormText = ""
) -> Response:
    try:
        retention.place_hold(db, aip_id, viewer.tenant_id, actor_of(viewer), reason=reason)
    except PreservationError as exc:
        return _refused(request, ctx, db, viewer, aip_id, exc)
    return _back(aip_id, "hold")


@router.post("/aips/{aip_id}/hold/lift")
def lift_hold(
    request: Request,
    ctx: Ctx,
    db: Db,
    viewer: Curator,
    aip_id: str,
    reason: FormText = "",
    hold_id: FormText = "",
) -> Response:
    try:
        retention.lift_hold(
            db,
            aip_id,
            viewer.tenant_id,
            actor_of(viewer),
            reason=reason,
            hold_id=int(hold_id) if hold_id.isdigit() and len(hold_id) < 18 else None,
        )
    except PreservationError as exc:
        return _refused(request, ctx, db, viewer, aip_id, exc)
    return _back(aip_id, "lifted")


@router.post("/aips/{aip_id}/disposal")
def ask_disposal(
    request: Request, ctx: Ctx, db: Db, viewer: Curator, aip_id: str, reason: FormText = ""
) -> Response:
    try:
        retention.request_disposal(db, aip_id, viewer.tenant_id, actor_of(viewer), reason=reason)
    except PreservationError as exc:
        return _refused(request, ctx, db, viewer, aip_id, exc)
    return _back(aip_id, "disposal")


@router.post("/aips/{aip_id}/disposals/{disposal_id}/approve")
def approve_disposal(
    request: Request, ctx: Ctx, db: Db, viewer: Curator, aip_id: str, disposal_id: str
) -> Response:
    """The second curator's yes; the four-eyes rule is the service's, its refusal shown here."""
    asked = retention.get_disposal(db, disposal_id, viewer.tenant_id)  # foreign: 404
    if asked.aip_id != lookup.check_uuid(aip_id, field="aip_id"):
        raise NotFoundError(f"AIP {aip_id} has no disposal {disposal_id}", aip_id=aip_id)
    try:
        retention.approve_disposal(ctx, asked.disposal_id, viewer.tenant_id, actor_of(viewer))
    except PreservationError as exc:
        return _refused(request, ctx, db, viewer, aip_id, exc)
    return _back(asked.aip_id, "approved")
