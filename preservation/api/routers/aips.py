"""AIPs: search, lookup, versions, files, events, descriptive metadata, retention, holds."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from preservation import dispatch, lookup, retention
from preservation.api.deps import Asker, Ctx, Db, actor_of, needs
from preservation.api.problems import responses
from preservation.catalog.models import AIPState, Role
from preservation.catalog.search import SearchQuery, parse_property_filter
from preservation.errors import InvalidRequestError, UnsupportedMediaError
from preservation.tokens import Principal

router = APIRouter(
    prefix="/aips", tags=["aips"], responses=responses(400, 401, 403, 404, 422, 503)
)
Curator = Annotated[Principal, Depends(needs(Role.CURATOR))]
AipId = Annotated[str, Path(description="The AIP's UUID", max_length=64)]


@router.get("", response_model=lookup.AIPPage, summary="Search AIPs, newest first")
def search_aips(
    db: Db,
    principal: Asker,
    q: Annotated[
        str | None,
        Query(max_length=500, description="Words in the description, bag-info or file names"),
    ] = None,
    puid: Annotated[str | None, Query(max_length=32, pattern=r"^[a-z-]+/[0-9]+$")] = None,
    external_identifier: Annotated[str | None, Query(max_length=255)] = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    state: AIPState | None = None,
    invalid: Annotated[
        bool | None,
        Query(description="true: AIPs holding a file that failed format validation"),
    ] = None,
    prop: Annotated[
        list[str],
        Query(
            alias="property",
            max_length=20,
            description="A file's significant property, NAME OP VALUE (width>10000, "
            "video_codec=FFV1); repeated, one file must meet them all (in the PUID, if given)",
        ),
    ] = [],  # noqa: B006 - FastAPI copies a query list's default
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> lookup.AIPPage:
    query = SearchQuery(
        tenant_id=principal.tenant_id,
        q=q,
        puid=puid,
        external_identifier=external_identifier,
        created_after=created_after,
        created_before=created_before,
        state=state,
        invalid=invalid,
        properties=tuple(parse_property_filter(p) for p in prop),
    )
    return lookup.search(db, query, cursor=cursor, limit=limit)


@router.get(
    "/by-external-id/{value}",
    response_model=lookup.AIPSummary,
    responses=responses(404),
    summary="The AIP a submitter's External-Identifier names",
)
def by_external_id(
    db: Db, principal: Asker, value: Annotated[str, Path(max_length=255)]
) -> lookup.AIPSummary:
    return lookup.aip_by_external_id(db, value, principal.tenant_id)


@router.get("/{aip_id}", response_model=lookup.AIPSummary, responses=responses(404))
def get_aip(db: Db, principal: Asker, aip_id: AipId) -> lookup.AIPSummary:
    return lookup.aip_summary(db, aip_id, principal.tenant_id)


@router.get(
    "/{aip_id}/versions", response_model=list[lookup.VersionView], responses=responses(404)
)
def get_versions(db: Db, principal: Asker, aip_id: AipId) -> list[lookup.VersionView]:
    return lookup.aip_versions(db, aip_id, principal.tenant_id)


@router.get(
    "/{aip_id}/versions/{number}",
    response_model=lookup.VersionDetail,
    responses=responses(404),
    summary="One version and the files of its tree, with formats and digests",
)
def get_version(
    db: Db,
    principal: Asker,
    aip_id: AipId,
    number: Annotated[int, Path(ge=1, le=1_000_000)],
    cursor: Annotated[str | None, Query(max_length=40)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> lookup.VersionDetail:
    return lookup.version_detail(
        db, aip_id, number, principal.tenant_id, cursor=cursor, limit=limit
        )


@router.get(
    "/{aip_id}/events",
    response_model=lookup.EventPage,
    responses=responses(404),
    summary="PREMIS events with their chain hashes",
)
def get_events(
    db: Db,
    principal: Asker,
    aip_id: AipId,
    cursor: Annotated[str | None, Query(max_length=40)] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> lookup.EventPage:
    return lookup.aip_events(db, aip_id, principal.tenant_id, cursor=cursor, limit=limit)


# -- descriptive metadata -----------------------------------------------------------------


class VersionAccepted(BaseModel):
    aip_id: str
    version: int
    state: str
    status_url: str


_DC_BODY = {
    "requestBody": {
        "required": True,
        "description": (
            "Simple Dublin Core: a JSON object of element -> string or list of strings, "
            "or an oai_dc XML record (no DOCTYPE, no entities)."
        ),
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "additionalProperties": {
                        "anyOf": [
                            {"type": "string"},
                            {"type": "array", "items": {"type": "string"}},
                        ]
                    },
                }
            },
            "application/xml": {"schema": {"type": "string"}},
        },
    }
}
MAX_METADATA_BYTES = 1 << 20


@router.put(
    "/{aip_id}/metadata",
    status_code=202,
    response_model=VersionAccepted,
    openapi_extra=_DC_BODY,
    responses=responses(404, 409, 413, 415),
    summary="Replace the descriptive metadata: a new, metadata-only version",
)
async def put_metadata(
    request: Request,
    ctx: Ctx,
    principal: Annotated[Principal, Depends(needs(Role.CURATOR, long_request=True))],
    aip_id: AipId,
) -> VersionAccepted:
    import json

    from starlette.concurrency import run_in_threadpool

    from preservation import versions
    from preservation.errors import UploadTooLargeError
    from preservation.metadata.dc_input import dc_from_json, dc_from_xml

    kind = (request.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
    if kind not in {"application/json", "application/xml", "text/xml"}:
        raise UnsupportedMediaError(
            f"descriptive metadata comes as application/json or application/xml, not "
            f"{kind or '(none)'!r}",
            rule="content-type",
            field="Content-Type",
        )
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_METADATA_BYTES:
            raise UploadTooLargeError(
                f"a metadata record is at most {MAX_METADATA_BYTES} bytes",
                rule="max-metadata-bytes",
            )
    if kind == "application/json":
        try:
            document: Any = json.loads(bytes(body))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidRequestError(
                f"the body is not JSON: {exc}", rule="json", field="body"
            ) from exc
        record = dc_from_json(document)
    else:
        record = dc_from_xml(bytes(body))

    def prepare() -> Any:
        return versions.prepare_metadata_version(
            ctx, aip_id, record, tenant_id=principal.tenant_id, who=actor_of(principal).who
        )

    info = await run_in_threadpool(prepare)
    dispatch.submit_version(ctx, info.version_id)
    return VersionAccepted(
        aip_id=info.aip_id,
        version=info.number,
        state=info.state,
        status_url=f"/api/v1/aips/{info.aip_id}/versions/{info.number}",
    )


# -- retention, holds, disposal -----------------------------------------------------------


class RetentionChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    until: date | None = Field(default=None, description="Keep until this date")
    period: str | None = Field(
        default=None,
        max_length=40,
        description="Or: keep this long after ingest (ISO 8601, e.g. P10Y), or 'permanent'",
    )


class Reason(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=2000)


@router.get(
    "/{aip_id}/retention", response_model=retention.RetentionView, responses=responses(404)
)
def get_retention(db: Db, principal: Asker, aip_id: AipId) -> retention.RetentionView:
    return retention.get_retention(db, aip_id, principal.tenant_id)


@router.put(
    "/{aip_id}/retention", response_model=retention.RetentionView, responses=responses(404, 409)
)
def put_retention(
    db: Db, principal: Curator, aip_id: AipId, change: RetentionChange
) -> retention.RetentionView:
    return retention.set_retention(
        db, aip_id, principal.tenant_id, actor_of(principal),
        until=change.until, period=change.period,
        )


@router.post(
    "/{aip_id}/hold",
    response_model=retention.RetentionView,
    responses=responses(404, 409),
    summary="Place a legal hold",
)
def post_hold(
    db: Db, principal: Curator, aip_id: AipId, body: Reason
) -> retention.RetentionView:
    return retention.place_hold(
        db, aip_id, principal.tenant_id, actor_of(principal), reason=body.reason
        )


@router.delete(
    "/{aip_id}/hold",
    response_model=retention.RetentionView,
    responses=responses(404, 409),
    summary="Lift the legal hold(s)",
)
def delete_hold(
    db: Db,
    principal: Curator,
    aip_id: AipId,
    reason: Annotated[str, Query(min_length=1, max_length=2000)],
    hold_id: Annotated[int | None, Query(ge=1, le=2**62)] = None,
) -> retention.RetentionView:
    return retention.lift_hold(
        db, aip_id, principal.tenant_id, actor_of(principal), reason=reason, hold_id=hold_id
        )


@router.post(
    "/{aip_id}/disposal",
    status_code=201,
    response_model=retention.DisposalView,
    responses=responses(404, 409),
    summary="Request the AIP's disposal (a second curator approves it)",
)
def post_disposal(
    db: Db, principal: Curator, aip_id: AipId, body: Reason
) -> retention.DisposalView:
    return retention.request_disposal(
        db, aip_id, principal.tenant_id, actor_of(principal), reason=body.reason
        )
