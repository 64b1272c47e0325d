"""`preservation siard`: databases as SIARD 2.2 archives, out of a live database and back.

None of these commands reads the data root or the catalogue: they work on a
database and a file, so an operator can run them where the database is and
carry the bag to the ingest folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from preservation.cli.terminal import EXIT_INVALID, fail, human_size, out, progress_bars, usage
from preservation.errors import InvalidRequestError, PreservationError

app = typer.Typer(
    help="Databases as SIARD 2.2 archives: export, bag for ingest, validate, load back.",
    no_args_is_help=True,
)

URL_HELP = "SQLAlchemy URL: postgresql+psycopg://user@host/db or sqlite:///path/to/file."


def _database_error(url: str, err: Exception) -> InvalidRequestError:
    from preservation.siard.connect import redact_url
    from preservation.siard.model import first_line

    return InvalidRequestError(f"{redact_url(url)}: {first_line(err)}")


@app.command("export")
def export(
    url: Annotated[str, typer.Option("--url", help=URL_HELP)],
    to: Annotated[Path, typer.Option("--to", help="The .siard file to write.")],
    schema: Annotated[
        list[str] | None,
        typer.Option(
            "--schema",
            help="Only this schema; repeat for several (default: every one but PostgreSQL's "
            "own; SQLite's is main).",
        ),
    ] = None,
    lob_threshold: Annotated[
        int,
        typer.Option(
            "--lob-threshold",
            min=0,
            help="BLOB, CLOB and XML values longer than this (bytes; characters for text) "
            "go to LOB files of their own in the archive; shorter ones stay in the table XML.",
        ),
    ] = 4096,
    data_owner: Annotated[
        str | None,
        typer.Option(
            "--data-owner",
            help="Who holds the rights to the data (metadata.xml dataOwner; default (unknown)).",
        ),
    ] = None,
    timespan: Annotated[
        str | None,
        typer.Option(
            "--data-origin-timespan",
            help="When the data arose, e.g. 1998-2024 (dataOriginTimespan; default (unknown)).",
        ),
    ] = None,
    description: Annotated[
        str | None,
        typer.Option(
            "--description", help="What the database is about (metadata.xml description)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Write a live database (PostgreSQL, SQLite) as a SIARD 2.2 archive, rows streamed.

    Values are written as the database holds them, never changed. Exit 2, and no
    file, when a table cannot be read (the database's error is named, e.g. no
    privilege) or a text column holds bytes that are not UTF-8 (table, column and
    row named). PostgreSQL values SIARD's types cannot hold (numeric NaN and
    infinities, infinite and BC dates and timestamps) are kept, counted and
    warned of: such an archive will not pass `siard validate`. SQLite columns of a
    type it does not know, or of none, are text, their declared type kept.
    """
    from preservation.siard.export import export_database

    if to.suffix.lower() != ".siard":
        raise usage(f"--to {to}: name a .siard file", as_json)
    if to.exists():
        raise usage(f"--to {to}: already exists; name a new file", as_json)
    warnings: list[str] = []
    try:
        with progress_bars(not as_json) as progress:
            archive = export_database(
                url,
                to,
                schemas=schema or None,
                lob_threshold=lob_threshold,
                progress=progress,
                data_owner=data_owner,
                data_origin_timespan=timespan,
                description=description,
                warn=warnings.append,
            )
    except PreservationError as e:
        raise fail(e, as_json) from e
    tables = archive.tables()
    summary: dict[str, Any] = {
        "path": str(to),
        "bytes": to.stat().st_size,
        "schemas": [s.name for s in archive.schemas],
        "tables": len(tables),
        "rows": sum(t.rows for _, t in tables),
        "views": sum(len(s.views) for s in archive.schemas),
        "database": archive.database_product,
        "warnings": warnings,
    }
    if as_json:
        out.print_json(data=summary)
        return
    for warning in warnings:
        out.print(f"warning: {warning}", highlight=False, markup=False)
    out.print(
        f"{to}: {summary['tables']} table(s), {summary['rows']:,} row(s), "
        f"{summary['views']} view(s) of schema(s) {', '.join(summary['schemas']) or '-'}; "
        f"{human_size(summary['bytes'])}",
        highlight=False,
        markup=False,
    )


def _labels(info: list[str] | None, as_json: bool) -> dict[str, str]:
    labels: dict[str, str] = {}
    for item in info or []:
        label, sep, value = item.partition("=")
        if not sep or not label.strip():
            raise usage(f"--info {item!r}: write it as Label=value", as_json)
        labels[label.strip()] = value.strip()
    return labels


@app.command("bag")
def bag(
    siard: Annotated[Path, typer.Argument(help="The .siard file.", exists=True, dir_okay=False)],
    to: Annotated[Path, typer.Option("--to", help="The bag folder to make (must not exist).")],
    info: Annotated[
        list[str] | None,
        typer.Option(
            "--info",
            metavar="LABEL=VALUE",
            help="A bag-info.txt label, e.g. Source-Organization=City Archive; repeat for "
            "more. Title, External-Description, Source-Organization and Date come from the "
            "archive's metadata.xml; --info adds labels or overrides those.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Wrap a SIARD archive in a BagIt bag, ready to drop into a tenant's ingest folder."""
    from preservation.siard.bag import bag_siard

    labels = _labels(info, as_json)
    try:
        made = bag_siard(siard, to, info=labels)
    except PreservationError as e:
        raise fail(e, as_json) from e
    # The bag's one payload file, as bag_siard named it (a .siard suffix is added
    # where the file had none), not the name it was given.
    payload = "/".join(next((made / "data").iterdir()).relative_to(made).parts)
    if as_json:
        out.print_json(data={"bag": str(made), "payload": payload})
        return
    out.print(f"bag {made}: {payload}", highlight=False, markup=False)


@app.command("validate")
def validate(
    siard: Annotated[Path, typer.Argument(help="The .siard file.", exists=True, dir_okay=False)],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Check a SIARD archive: zip, structure, metadata and every table against its XSD, row counts.

    Exit 0 when it is valid, 1 when it is not (each problem names the table and the rule).
    """
    from preservation.siard.validate import validate_siard

    try:
        with progress_bars(not as_json) as progress:
            report = validate_siard(siard, progress=progress)
    except PreservationError as e:
        raise fail(e, as_json) from e
    if as_json:
        out.print_json(
            data={
                "path": str(siard),
                "valid": report.valid,
                "tables": report.tables,
                "rows": report.rows,
                "lob_count": report.lob_count,
                "lob_bytes": report.lob_bytes,
                "source_dbms": report.source_dbms,
                "problems": [
                    {"table": p.table, "entry": p.entry, "rule": p.rule, "message": p.message}
                    for p in report.problems
                ],
            }
        )
    else:
        for p in report.problems:
            out.print(f"{p.where or siard}: {p.rule}: {p.message}", highlight=False, markup=False)
        verdict = "valid" if report.valid else f"INVALID, {len(report.problems)} problem(s)"
        out.print(
            f"{siard}: {verdict}; {report.tables} table(s), {report.rows:,} row(s), "
            f"{report.lob_count} LOB file(s)",
            highlight=False,
            markup=False,
        )
    if not report.valid:
        raise typer.Exit(EXIT_INVALID)


@app.command("load")
def load(
    siard: Annotated[Path, typer.Argument(help="The .siard file.", exists=True, dir_okay=False)],
    url: Annotated[str, typer.Option("--url", help=URL_HELP)],
    replace: Annotated[
        bool, typer.Option("--replace", help="Drop tables of the same names first.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Load the tables of a SIARD archive into PostgreSQL or SQLite, keys included."""
    import sqlalchemy as sa

    from preservation.siard.load import load_siard

    summary: Any
    try:
        with progress_bars(not as_json) as progress:
            summary = load_siard(siard, url, progress=progress, replace=replace)
    except PreservationError as e:
        raise fail(e, as_json) from e
    except sa.exc.SQLAlchemyError as e:
        raise fail(_database_error(url, e), as_json) from e
    if as_json:
        out.print_json(
            data={
                "tables": summary.tables,
                "rows": summary.rows,
                "names": dict(summary.names),
                "problems": list(summary.problems),
                "renamed": list(summary.renamed),
            }
        )
        return
    for note in summary.renamed:
        out.print(f"note: {note}", highlight=False, markup=False)
    for problem in summary.problems:
        out.print(f"warning: {problem}", highlight=False, markup=False)
    out.print(
        f"{siard}: {summary.tables} table(s), {summary.rows:,} row(s) loaded",
        highlight=False,
        markup=False,
    )
