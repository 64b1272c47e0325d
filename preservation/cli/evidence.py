"""Legal value: `evidence export|verify|renew`, `history head|sync` and `verify-history`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from preservation.cli.terminal import EXIT_INVALID, EXIT_SYSTEM, err, fail, in_context, out, usage

app = typer.Typer(
    help="RFC 4998 evidence records: export one, verify one anywhere, renew them all.",
    no_args_is_help=True,
)
history_app = typer.Typer(
    help="The event history: its head for safekeeping, and the journal sync to tape.",
    no_args_is_help=True,
)


@app.command("export")
def evidence_export(
    aip_id: Annotated[str, typer.Argument(help="The AIP (id or unique prefix).")],
    version: Annotated[
        int | None, typer.Option("--version", "-v", min=1, help="Default: the newest.")
    ] = None,
    to: Annotated[
        Path | None, typer.Option("--to", help="Where to write it (default ./<aip>-v<N>.ers).")
    ] = None,
    tenant: Annotated[
        str | None, typer.Option("--tenant", "-t", help="Refuse an AIP of another tenant.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Write a version's RFC 4998 EvidenceRecord (DER): with the tar and the TSA's certificate,
    anyone can check it, with no catalogue, no tape and none of this software."""
    from preservation.evidence.periods import export_record

    def work(ctx: Any) -> Any:
        return export_record(ctx, aip_id, version=version, tenant_id=tenant)

    aip, number, der = in_context(as_json, work)
    target = to or Path(f"{aip}-v{number}.ers")
    target.write_bytes(der)
    if as_json:
        out.print_json(data={"aip": aip, "version": number, "path": str(target), "bytes": len(der)})
    else:
        out.print(
            f"{escape(str(target))}: evidence record of AIP {aip} v{number}, {len(der)} bytes"
        )


@app.command("verify")
def evidence_verify(
    record: Annotated[Path, typer.Argument(help="The .ers file (DER).", exists=True)],
    data: Annotated[
        list[Path],
        typer.Option(
            "--data",
            exists=True,
            dir_okay=False,
            help="The version's tar (and optionally its METS.xml); repeat for several.",
        ),
    ],
    tsa_cert: Annotated[
        list[Path] | None,
        typer.Option(
            "--tsa-cert",
            exists=True,
            dir_okay=False,
            help="PEM certificates of the TSA(s): CA and TSA; repeat for a renewal's new TSA.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Check an evidence record against the data and the TSA's certificates alone.

    Reads no settings, no catalogue and no tape: exit 0 when every
    time-stamp is valid and the data is covered by the record, 1 otherwise.
    """
    from preservation.errors import PreservationError
    from preservation.evidence import records
    from preservation.evidence.tsa import TsaTrust, verify_token

    certs = list(tsa_cert or [])
    if not certs:
        raise usage("--tsa-cert is required: the record is checked against the TSA's CA", as_json)
    try:
        trust = TsaTrust.from_pem_files(certs)
        report = records.verify(
            record.read_bytes(),
            list(data),
            lambda token, digest, algorithm: verify_token(token, digest, trust, algorithm),
        )
    except PreservationError as e:
        raise fail(e, as_json) from e
    if as_json:
        out.print_json(data=report.to_dict())
    else:
        for step in report.steps:
            out.print(escape(step), highlight=False)
        if report.ok:
            out.print(
                f"[green]valid[/green]: {escape(str(record))} covers "
                + ", ".join(escape(str(d)) for d in data)
            )
        else:
            err.print(f"[red]invalid[/red]: {escape(report.failure or '')}", highlight=False)
    raise typer.Exit(0 if report.ok else EXIT_INVALID)


@app.command("renew")
def evidence_renew(
    hash_algorithm: Annotated[
        str | None,
        typer.Option(
            "--hash",
            help="Hash-tree renewal (RFC 4998 §5.3) to this algorithm (sha512): every tar is "
            "read back from tape. Without it: time-stamp renewal (§5.2), tapes untouched.",
        ),
    ] = None,
    tenant: Annotated[str | None, typer.Option("--tenant", "-t")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Renew every open evidence chain with a new time-stamp, or rehash with a new algorithm."""
    from preservation.errors import ConfigurationError
    from preservation.evidence import periods, stamping

    def work(ctx: Any) -> Any:
        tsa = stamping.configured_tsa(ctx)
        if tsa is None:
            raise ConfigurationError("renewal needs a TSA: set PRESERVATION_TSA_URL")
        if hash_algorithm:
            return periods.renew_hash_trees(ctx, tsa, hash_algorithm, tenant_id=tenant)
        return periods.renew_timestamps(ctx, tsa, tenant_id=tenant)

    report = in_context(as_json, work)
    if as_json:
        out.print_json(data=report.to_dict())
    else:
        what = "hash-tree renewal" if report.kind == "rehash" else "time-stamp renewal"
        out.print(f"{what}: {len(report.stamps)} new time-stamp(s) over {report.leaves} leaves")


@history_app.command("head")
def history_head(
    tenant: Annotated[str | None, typer.Option("--tenant", "-t")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Print each tenant's chain head, its sequence number and its latest time-stamp.

    Hand it to someone outside (a notary, another institution): a later
    rewrite of everything up to it cannot match it.
    """
    from preservation.evidence.history import history_head as heads_of

    heads = in_context(as_json, lambda ctx: heads_of(ctx, tenant_id=tenant))
    if as_json:
        out.print_json(data={"heads": [h.to_dict() for h in heads]})
        return
    for h in heads:
        out.print(f"tenant {h.tenant}: seq {h.seq} head {h.head or '-'}", highlight=False)
        if h.stamped_seq is None:
            out.print("  not yet time-stamped", highlight=False)
        else:
            out.print(
                f"  time-stamped up to seq {h.stamped_seq}: head {h.stamped_head}, "
                f"{h.stamped_at.isoformat() if h.stamped_at else '?'} by {h.tsa} "
                f"(serial {h.serial})",
                highlight=False,
            )


@history_app.command("sync")
def history_sync(
    tenant: Annotated[str | None, typer.Option("--tenant", "-t")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Cut the new events into journal segments, seal evidence periods, time-stamp, write to tape.

    Beat runs it every PRESERVATION_JOURNAL_INTERVAL_SECONDS; exit 3 when something
    waits (a TSA or a site away), 0 when everything is stamped and on tape.
    """
    from preservation.evidence.sync import sync_journal

    report = in_context(as_json, lambda ctx: sync_journal(ctx, tenant_id=tenant))
    if as_json:
        out.print_json(data=report.to_dict())
    else:
        out.print(report.summary_line(), highlight=False)
        for p in report.problems:
            err.print(f"[yellow]waiting[/yellow]: {escape(p)}", highlight=False)
    raise typer.Exit(EXIT_SYSTEM if report.problems or report.files_waiting else 0)


def verify_history(
    tenant: Annotated[str | None, typer.Option("--tenant", "-t")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Compare the database chain, the tape journal at each site and the time-stamps.

    Names the first point of disagreement per tenant. Exit 0 when all agree,
    1 when history was altered somewhere.
    """
    from preservation.evidence.history import verify_history as check

    report = in_context(as_json, lambda ctx: check(ctx, tenant_id=tenant))
    if as_json:
        out.print_json(data=report.to_dict())
    else:
        for t in report.tenants:
            first = t.first
            line = (
                f"tenant {t.tenant}: {t.database_events} events in the database, "
                f"{t.journal_events} on tape in {t.segments} segment(s), "
                f"{t.stamps_verified} time-stamp(s) verified"
            )
            if t.not_on_tape:
                line += f", {t.not_on_tape} not yet on tape"
            out.print(line, highlight=False)
            if first is None:
                out.print("  [green]history intact[/green]")
            else:
                out.print(
                    f"  [red]first disagreement[/red] at event {first.seq} ({first.where}): "
                    f"{escape(first.what)}",
                    highlight=False,
                )
                for d in t.findings:
                    if d is not first:
                        out.print(f"  also: event {d.seq} ({d.where}): {escape(d.what)}")
            for note in t.notes:
                err.print(f"  note: {escape(note)}", highlight=False)
        out.print(f"{report.events} events checked in {report.seconds:.2f} s", highlight=False)
    raise typer.Exit(0 if report.ok else EXIT_INVALID)
