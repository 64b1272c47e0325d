"""The ``preservation`` command: the embedded pipeline and the operator's tools.

One module per command group; this file only wires them into one Typer app,
so ``preservation --help`` lists what each module offers. Commands are thin:
they parse, call the same service functions the workers and the API call, and
print. Exit codes are decided in ``terminal.py`` alone.

What every command shares is set up once, in the group: a usage error comes
as JSON when ``--json`` was asked for, the library's JSON log lines stay off
a person's terminal, and an implicit data root (``./var``, because
``PRESERVATION_HOME`` is not set) is said out loud, so that someone who ran
the demo under ``var/demo`` does not stare at an empty ``status``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import typer
from typer.core import TyperGroup

try:  # Typer 0.29 and later carry their own copy of Click
    from typer._click.exceptions import UsageError
except ImportError:  # pragma: no cover - older Typer, on Click itself
    from click.exceptions import UsageError  # type: ignore[assignment]

from preservation.cli import (
    aips,
    api,
    catalog,
    db,
    dips,
    evidence,
    formats,
    ingest,
    media,
    migrate,
    siard,
    sips,
    storage,
    tape,
    tenants,
    tokens,
    users,
)
from preservation.cli.logs import configure_logging
from preservation.cli.terminal import EXIT_USAGE, err, out

__all__ = ["app", "main"]


class _Group(TyperGroup):
    """Usage errors honour ``--json``: a script gets a body it can parse, and exit 2."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        if "--json" not in argv or not standalone_mode:
            return super().main(argv, prog_name, complete_var, standalone_mode, **extra)
        try:
            code = super().main(argv, prog_name, complete_var, False, **extra)
            # Outside standalone mode Click returns a command's exit code instead of exiting.
            sys.exit(code if isinstance(code, int) else 0)
        except UsageError as e:
            where = e.ctx.command_path if e.ctx is not None else "preservation"
            out.print_json(
                data={"error": "UsageError", "message": e.format_message(), "command": where}
            )
            sys.exit(EXIT_USAGE)
        except typer.Exit as e:
            sys.exit(e.exit_code)
        except typer.Abort:
            err.print("aborted")
            sys.exit(1)
        finally:
            sys.stdout.flush()


app = typer.Typer(
    cls=_Group,
    help="An OAIS preservation pipeline: BagIt in, two verified LTFS tape copies out.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _every_command(ctx: typer.Context) -> None:
    import os

    from preservation.config import Settings

    as_json = "--json" in sys.argv[1:] or any("--json" in a for a in ctx.args)
    configure_logging(as_json=as_json)
    # `evidence verify` and the `siard` commands read no data root at all: no note about one.
    standalone = sys.argv[1:3] == ["evidence", "verify"] or ctx.invoked_subcommand == "siard"
    if (
        "PRESERVATION_HOME" not in os.environ
        and ctx.invoked_subcommand is not None
        and not standalone
    ):
        home = Settings().home_dir
        err.print(
            f"data root: {home} (the default ./var: PRESERVATION_HOME is not set)",
            highlight=False,
            soft_wrap=True,
        )


app.command()(ingest.validate)
app.command()(ingest.ingest)
app.command()(sips.status)
app.command()(sips.resume)
app.command()(aips.show)
app.command()(ingest.watch)
app.add_typer(sips.app, name="sip")
app.add_typer(tape.app, name="tape")
app.command()(storage.audit)
app.command()(storage.repair)
app.command()(storage.recover)
app.command()(migrate.migrate)
app.add_typer(media.app, name="media")
app.add_typer(db.app, name="db")
app.add_typer(catalog.app, name="catalog")
app.add_typer(aips.app, name="aip")
app.add_typer(dips.app, name="dip")
app.add_typer(siard.app, name="siard")
app.add_typer(formats.app, name="formats")
app.add_typer(tenants.app, name="tenant")
app.add_typer(tokens.app, name="token")
app.add_typer(users.app, name="user")
app.add_typer(evidence.app, name="evidence")
app.add_typer(evidence.history_app, name="history")
app.command("verify-history")(evidence.verify_history)
app.command()(api.api)


def main() -> None:  # pragma: no cover - console entry point
    """The console script: the command, then a quick exit.

    Once the command has finished, its non-daemon threads have ended and
    every ``atexit`` handler has run (identification workers and forkserver
    stopped, logs flushed), the interpreter's teardown of some hundreds of
    modules only costs time: a fifth of a second that every command, the
    cold ``preservation ingest`` included, would otherwise pay.
    """
    import atexit
    import os
    import threading

    try:
        app()
        code = 0
    except SystemExit as e:
        if isinstance(e.code, str):
            print(e.code, file=sys.stderr)
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    if any(t.is_alive() and not t.daemon for t in threading.enumerate()[1:]):
        sys.exit(code)  # someone still works: the interpreter's own exit waits for them
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)
