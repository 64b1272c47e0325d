"""The ``preservation`` command: the embedded pipeline and the operator's tools.

One module per command group; this file only wires them into one Typer app,
so ``preservation --help`` lists what each module offers. Commands are thin:
they parse, call the same service functions the workers and the API call, and
print. Exit codes are decided in ``terminal.py`` alone.
"""

from __future__ import annotations

import typer

from preservation.cli import aips, db, ingest, sips, storage, tape

__all__ = ["app", "main"]

app = typer.Typer(
    help="An OAIS preservation pipeline: BagIt in, two verified LTFS tape copies out.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

app.command()(ingest.validate)
app.command()(ingest.ingest)
app.command()(sips.status)
app.command()(sips.resume)
app.command()(aips.show)
app.command()(ingest.watch)
app.add_typer(tape.app, name="tape")
app.command()(storage.audit)
app.command()(storage.repair)
app.command()(storage.recover)
app.add_typer(db.app, name="db")


def main() -> None:  # pragma: no cover - console entry point
    app()
