"""What the archive holds: `show`."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from preservation.cli.terminal import (
    in_context,
    out,
)


def resolve_aip(ctx: Any, text: str) -> str:
    """A full AIP id from a full id or a unique prefix (8+ characters, as `status` prints)."""
    from preservation.catalog import service, session_scope

    with session_scope(ctx.sessions) as s:
        return service.resolve_aip_id(s, text)


def show(
    aip_id: Annotated[str, typer.Argument(help="The AIP's UUID or a unique 8+ character prefix.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Show an AIP: files and formats, versions, tape copies, PREMIS events."""
    from preservation.inventory import describe_aip

    data = in_context(as_json, lambda ctx: describe_aip(ctx, resolve_aip(ctx, aip_id)))
    if as_json:
        out.print_json(data=data)
        return
    out.print(
        f"[bold]AIP {data['aip_id']}[/bold]  tenant {data['tenant']}  state {data['state']}",
        highlight=False,
    )
    out.print(
        f"bag {data['source_bag_name']}  external id {data['external_identifier'] or '-'}",
        highlight=False,
    )
    if data.get("descriptive"):
        record = Table("element", "value", title="descriptive metadata (Dublin Core)")
        for element, values in data["descriptive"].items():
            for value in values:
                record.add_row(element, value)
        out.print(record)
    for v in data["versions"]:
        out.print(
            f"\n[bold]version {v['number']}[/bold] ({v['reason']}, {v['state']}) "
            f"{v['tar_size']} bytes sha256 {v['tar_sha256']}",
            highlight=False,
        )
        copies = Table("site", "barcode", "path", "status", "verified")
        for c in v["copies"]:
            copies.add_row(c["site"], c["barcode"], c["path"], c["status"], c["verified_at"] or "")
        out.print(copies)
    files = Table("file", "size", "PUID", "format", "valid", "properties")
    findings = []
    for f in data["files"]:
        valid = f.get("valid")
        files.add_row(
            f["original_name"],
            str(f["size"]),
            f["puid"] or "?",
            " ".join(x for x in (f["format_name"], f["format_version"]) if x),
            "-" if valid is None else "yes" if valid else "[red]NO[/red]",
            _properties_text(f.get("properties") or {}),
        )
        findings += [
            (f["original_name"], v)
            for v in f.get("validation") or []
            if v.get("valid") is False
        ]
    out.print(files)
    if findings:
        table = Table("file", "tool", "why", title="format validation: malformed files")
        for name, v in findings:
            table.add_row(name, f"{v['tool']} {v['version']}", v["message"])
        out.print(table)
    events = Table("when", "event", "outcome", "detail")
    for e in data["events"]:
        events.add_row(e["occurred_at"][:19], e["type"], e["outcome"], e["detail"][:70])
    out.print(events)


# -- the `aip` group: the API's AIP routes, from a terminal -------------------------------

app = typer.Typer(help="Find, describe, keep and dispose of AIPs.", no_args_is_help=True)
dispose_app = typer.Typer(help="Disposal: request, approve (four eyes), list.")
app.add_typer(dispose_app, name="dispose")

JsonOpt = Annotated[bool, typer.Option("--json")]
TenantOpt = Annotated[
    str | None, typer.Option("--tenant", help="Only this tenant's (default: every tenant)")
]
ByOpt = Annotated[
    str | None,
    typer.Option("--by", help="Who acts, as events and the four-eyes rule name them"),
]


def _actor(by: str | None) -> Any:
    import getpass

    from preservation.retention import Actor

    name = (by or "").strip() or getpass.getuser()
    return Actor(id=f"cli:{name}", label=name)


def _print_page(page: Any, as_json: bool) -> None:
    if as_json:
        out.print_json(page.model_dump_json())
        return
    table = Table("AIP", "tenant", "state", "created", "external id", "bag", "title")
    for a in page.items:
        title = ", ".join((a.descriptive or {}).get("title", []))[:40]
        table.add_row(
            a.aip_id, a.tenant, a.state, a.created_at.isoformat()[:19],
            a.external_identifier or "", a.source_bag_name, title,
        )
    out.print(table)
    if page.next_cursor:
        out.print(f"more: --cursor {page.next_cursor}", highlight=False)


def _search(as_json: bool, **query: Any) -> None:
    from preservation.catalog import session_scope
    from preservation.catalog.search import SearchQuery
    from preservation.lookup import search

    cursor, limit = query.pop("cursor"), query.pop("limit")

    def work(ctx: Any) -> Any:
        with session_scope(ctx.sessions) as s:
            return search(s, SearchQuery(**query), cursor=cursor, limit=limit)

    _print_page(in_context(as_json, work), as_json)


@app.command("ls")
def aip_ls(
    tenant: TenantOpt = None,
    state: Annotated[str | None, typer.Option("--state")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000)] = 50,
    cursor: Annotated[str | None, typer.Option("--cursor")] = None,
    as_json: JsonOpt = False,
) -> None:
    """AIPs, newest first (GET /api/v1/aips)."""
    _search(
        as_json, tenant_id=tenant, state=_state(state, as_json), cursor=cursor, limit=limit
    )


def _state(state: str | None, as_json: bool) -> Any:
    from preservation.catalog.models import AIPState
    from preservation.cli.terminal import usage

    if state is None:
        return None
    try:
        return AIPState(state)
    except ValueError:
        raise usage(
            f"--state must be one of {', '.join(s.value for s in AIPState)}", as_json
        ) from None


@app.command("search")
def aip_search(
    q: Annotated[str | None, typer.Argument(help="Words; a trailing * matches a prefix")] = None,
    puid: Annotated[str | None, typer.Option("--puid")] = None,
    external_id: Annotated[str | None, typer.Option("--external-id")] = None,
    after: Annotated[str | None, typer.Option("--after", help="Created on/after (ISO)")] = None,
    before: Annotated[str | None, typer.Option("--before", help="Created before (ISO)")] = None,
    state: Annotated[str | None, typer.Option("--state")] = None,
    invalid: Annotated[
        bool | None,
        typer.Option("--invalid/--valid", help="Only AIPs with (or without) malformed files"),
    ] = None,
    prop: Annotated[
        list[str] | None,
        typer.Option(
            "--property",
            help="A file's property, NAME OP VALUE (width>10000, video_codec=FFV1); repeatable",
        ),
    ] = None,
    tenant: TenantOpt = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000)] = 50,
    cursor: Annotated[str | None, typer.Option("--cursor")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Full-text and field search over the catalogue (GET /api/v1/aips?q=...)."""
    from datetime import UTC, datetime

    from preservation.cli.terminal import usage

    def when(text: str | None, option: str) -> datetime | None:
        if text is None:
            return None
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            raise usage(f"{option} {text!r} is not an ISO date or date-time", as_json) from None
        return value if value.tzinfo else value.replace(tzinfo=UTC)

    _search(
        as_json,
        tenant_id=tenant,
        q=q,
        puid=puid,
        external_identifier=external_id,
        created_after=when(after, "--after"),
        created_before=when(before, "--before"),
        state=_state(state, as_json),
        invalid=invalid,
        properties=_properties(prop or [], as_json),
        cursor=cursor,
        limit=limit,
    )


def _properties(texts: list[str], as_json: bool) -> tuple[Any, ...]:
    from preservation.catalog.search import parse_property_filter
    from preservation.cli.terminal import usage
    from preservation.errors import InvalidRequestError

    try:
        return tuple(parse_property_filter(t) for t in texts)
    except InvalidRequestError as e:
        raise usage(f"--property: {e.message}", as_json) from None


def _properties_text(props: dict[str, Any]) -> str:
    """The significant properties a curator reads first, on one line."""
    parts = []
    if "width" in props and "height" in props:
        parts.append(f"{props['width']}x{props['height']}")
    if "duration" in props:
        parts.append(f"{props['duration']:.2f} s")
    for key, unit in (("sample_rate", " Hz"), ("channels", " ch"), ("page_count", " p.")):
        if key in props:
            parts.append(f"{props[key]}{unit}")
    for key in ("video_codec", "audio_codec", "colour_space", "compression", "pdf_version"):
        if key in props:
            parts.append(str(props[key]))
    if props.get("encrypted"):
        parts.append("encrypted")
    return " ".join(parts)


@app.command("show")
def aip_show(
    aip_id: Annotated[str, typer.Argument(help="The AIP's UUID or a unique 8+ character prefix.")],
    as_json: JsonOpt = False,
) -> None:
    """An AIP: versions, copies, files and formats, PREMIS events."""
    show(aip_id, as_json)


@app.command("metadata")
def aip_metadata(
    aip_id: Annotated[str, typer.Argument()],
    file: Annotated[
        str | None,
        typer.Option("--file", help="Dublin Core as JSON ({element: value}) or oai_dc XML"),
    ] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="element=value (repeatable)")
    ] = None,
    by: ByOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Replace the descriptive metadata: writes version N+1 to both sites and commits it."""
    import json
    from pathlib import Path

    from preservation.cli.terminal import usage
    from preservation.metadata.dc_input import dc_from_json, dc_from_xml

    if (file is None) == (not set_):
        raise usage("give either --file or one or more --set element=value", as_json)

    def work(ctx: Any) -> Any:
        from preservation import versions

        if file is not None:
            data = Path(file).read_bytes()
            if data.lstrip()[:1] in (b"{", b"["):
                try:
                    record = dc_from_json(json.loads(data))
                except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                    raise usage(f"{file}: not JSON: {exc}", as_json) from None
            else:
                record = dc_from_xml(data)
        else:
            pairs: dict[str, list[str]] = {}
            for item in set_ or []:
                element, sep, value = item.partition("=")
                if not sep:
                    raise usage(f"--set {item!r}: expected element=value", as_json)
                pairs.setdefault(element.strip(), []).append(value)
            record = dc_from_json(pairs)
        full = resolve_aip(ctx, aip_id)
        info = versions.prepare_metadata_version(
            ctx, full, record, tenant_id=None, who=_actor(by).who
        )
        versions.run_version(ctx, info.version_id)
        from preservation.catalog import session_scope
        from preservation.lookup import aip_versions

        with session_scope(ctx.sessions) as s:
            return next(v for v in aip_versions(s, full, None) if v.number == info.number)

    version = in_context(as_json, work)
    if as_json:
        out.print_json(version.model_dump_json())
    else:
        out.print(
            f"version {version.number} ({version.reason}) committed "
            f"{version.committed_at}, {len(version.copies)} copies",
            highlight=False,
        )


def _print_retention(view: Any, as_json: bool) -> None:
    if as_json:
        out.print_json(view.model_dump_json())
        return
    until = view.retention_until.date().isoformat() if view.retention_until else "permanent"
    out.print(f"AIP {view.aip_id} ({view.state}): kept until {until}", highlight=False)
    for h in view.holds:
        state = f"lifted {h.lifted_at:%Y-%m-%d} by {h.lifted_by}" if h.lifted_at else "IN FORCE"
        out.print(f"  hold {h.id}: {h.reason} ({h.placed_by}, {state})", highlight=False)
    out.print(
        "  disposable now" if view.disposable else f"  not disposable: {view.why_not}",
        highlight=False,
    )


@app.command("retention")
def aip_retention(
    aip_id: Annotated[str, typer.Argument()],
    until: Annotated[str | None, typer.Option("--until", help="Keep until (YYYY-MM-DD)")] = None,
    period: Annotated[
        str | None, typer.Option("--period", help="Keep for (ISO 8601: P10Y) or 'permanent'")
    ] = None,
    by: ByOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show the retention and holds, or set the retention (--until or --period)."""
    from datetime import date

    from preservation import retention
    from preservation.catalog import session_scope
    from preservation.cli.terminal import usage

    day = None
    if until is not None:
        try:
            day = date.fromisoformat(until)
        except ValueError:
            raise usage(f"--until {until!r} is not a date (YYYY-MM-DD)", as_json) from None

    def work(ctx: Any) -> Any:
        full = resolve_aip(ctx, aip_id)
        with session_scope(ctx.sessions) as s:
            if day is None and period is None:
                return retention.get_retention(s, full, None)
            return retention.set_retention(s, full, None, _actor(by), until=day, period=period)

    _print_retention(in_context(as_json, work), as_json)


@app.command("hold")
def aip_hold(
    aip_id: Annotated[str, typer.Argument()],
    reason: Annotated[str, typer.Option("--reason", help="Why (the case, the order)")],
    lift: Annotated[bool, typer.Option("--lift", help="Lift the hold(s) instead")] = False,
    hold_id: Annotated[int | None, typer.Option("--hold-id", help="Lift only this one")] = None,
    by: ByOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Place a legal hold, or lift one (--lift)."""
    from preservation import retention
    from preservation.catalog import session_scope

    def work(ctx: Any) -> Any:
        full = resolve_aip(ctx, aip_id)
        with session_scope(ctx.sessions) as s:
            if lift:
                return retention.lift_hold(
                    s, full, None, _actor(by), reason=reason, hold_id=hold_id
                )
            return retention.place_hold(s, full, None, _actor(by), reason=reason)

    _print_retention(in_context(as_json, work), as_json)


def _print_disposal(view: Any, as_json: bool) -> None:
    if as_json:
        out.print_json(view.model_dump_json())
        return
    out.print(
        f"disposal {view.disposal_id} of AIP {view.aip_id}: {view.state} "
        f"(asked by {view.requested_by}"
        + (f", approved by {view.approved_by}" if view.approved_by else "")
        + ")",
        highlight=False,
    )
    if view.pending_sites:
        out.print(
            f"  copies still listed at {', '.join(view.pending_sites)}: "
            "`preservation repair` finishes the disposal there once the site is back",
            highlight=False,
        )


@dispose_app.command("request")
def dispose_request(
    aip_id: Annotated[str, typer.Argument()],
    reason: Annotated[str, typer.Option("--reason")],
    by: ByOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Ask for an AIP's disposal; refused under hold or before its retention date."""
    from preservation import retention
    from preservation.catalog import session_scope

    def work(ctx: Any) -> Any:
        full = resolve_aip(ctx, aip_id)
        with session_scope(ctx.sessions) as s:
            return retention.request_disposal(s, full, None, _actor(by), reason=reason)

    _print_disposal(in_context(as_json, work), as_json)


@dispose_app.command("approve")
def dispose_approve(
    disposal_id: Annotated[str, typer.Argument()],
    by: ByOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Approve a disposal (someone other than who asked): the AIP becomes a tombstone."""
    from preservation import retention

    view = in_context(
        as_json, lambda ctx: retention.approve_disposal(ctx, disposal_id, None, _actor(by))
    )
    _print_disposal(view, as_json)


@dispose_app.command("ls")
def dispose_ls(tenant: TenantOpt = None, as_json: JsonOpt = False) -> None:
    """Disposals, newest first: waiting for approval, and carried out."""
    from preservation import retention
    from preservation.catalog import session_scope

    def work(ctx: Any) -> Any:
        with session_scope(ctx.sessions) as s:
            return retention.list_disposals(s, tenant)

    rows = in_context(as_json, work)
    if as_json:
        out.print_json(data=[r.model_dump(mode="json") for r in rows])
        return
    table = Table("disposal", "AIP", "state", "asked by", "approved by", "reason")
    for r in rows:
        table.add_row(
            r.disposal_id, r.aip_id, r.state, r.requested_by, r.approved_by or "", r.reason[:40]
        )
    out.print(table)
