"""What every command shares: the two consoles, exit codes, errors mapped to them.

Errors of our own tree map to exit codes here and nowhere else: 1 for a bad
submission (the curator's problem), 2 for usage, 3 for storage or other
system failures (the operator's problem).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from preservation.config import Settings
from preservation.errors import (
    AccessError,
    ConflictError,
    DataRootError,
    InvalidRequestError,
    InvalidSIPError,
    NotFoundError,
    PreservationError,
)

# soft_wrap: a path or a command to copy is never broken across lines; tables still fit.
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

T = TypeVar("T")

EXIT_INVALID = 1
EXIT_USAGE = 2
EXIT_SYSTEM = 3
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report a Ctrl-C


#: Commands that only read the archive: a data root on read-only media still serves them
#: (``tape ls`` and ``tape show`` as the group's path). Every other command writes.
READ_ONLY_COMMANDS = frozenset(
    {"status", "show", "tape ls", "tape show", "recover", "formats report"}
)
# Commands that work on an archive already there; only ingest, watch and
# db upgrade may begin one at the implicit ./var.
EXISTING_ARCHIVE_COMMANDS = READ_ONLY_COMMANDS | {
    "audit",
    "repair",
    "resume",
    "sip discard",
    "dip request",
    "dip status",
    "dip get",
    "media migrate",
    "tape import",
    "tape export",
    "evidence export",
    "evidence renew",
    "history head",
    "history sync",
    "verify-history",
}


def load_settings() -> Settings:
    """The settings, once the data root they name is known to serve the running command.

    Every command calls this before anything else, so this is where a data
    root that is a file, cannot be made, is read-only under a command that
    writes, or holds a catalogue that is no database, ends: one ``error:`` line
    (or the JSON error) and exit 3, never a traceback from deep inside a command.
    """
    from preservation.context import check_data_root

    settings = Settings()
    command, as_json = _invocation()
    if command in EXISTING_ARCHIVE_COMMANDS and "PRESERVATION_HOME" not in os.environ:
        home = settings.home_dir
        if not (home.exists() or home.is_symlink()):
            # A command for an archive already there must not leave an empty one
            # where the user happened to stand: most likely, the wrong folder.
            e = DataRootError(
                f"there is no archive at {home} (the default ./var: PRESERVATION_HOME is not "
                "set); set PRESERVATION_HOME to the data root, or run this where it is",
                path=home,
            )
            raise fail(e, as_json)
    if command:
        try:
            check_data_root(settings, read_only=None if command in READ_ONLY_COMMANDS else False)
        except PreservationError as e:
            raise fail(e, as_json) from e
    return settings


def _invocation() -> tuple[str | None, bool]:
    """The running command's path below the program (``tape ls``) and its ``--json``."""
    try:  # Typer 0.29 and later carry their own copy of Click
        from typer._click.globals import get_current_context
    except ImportError:  # pragma: no cover - older Typer, on Click itself
        from click import get_current_context  # type: ignore[no-redef]
    current = get_current_context(silent=True)
    if current is None:
        return None, False
    names: list[str] = []
    here = current
    while here.parent is not None:
        names.append(here.info_name or "")
        here = here.parent
    return " ".join(reversed(names)), bool(current.params.get("as_json"))


@contextmanager
def progress_bars(enabled: bool) -> Iterator[Any]:
    """A progress bar on a terminal; silence in pipes and under --json."""
    if not enabled or not err.is_terminal:
        yield lambda what, done, total: None
        return
    bars: dict[str, Any] = {}
    with Progress(
        TextColumn("{task.description:<12}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=False,
    ) as progress:

        def update(what: str, done: int, total: int) -> None:
            if what not in bars:
                bars[what] = progress.add_task(what, total=total)
            progress.update(bars[what], completed=done, total=total)

        yield update


def _command() -> dict[str, str]:
    """The ``command`` key every JSON error carries, as Click's usage errors do."""
    command, _ = _invocation()
    return {"command": f"preservation {command}"} if command else {}


def fail(error: PreservationError, as_json: bool) -> typer.Exit:
    if as_json:
        out.print_json(data=error.to_dict() | _command())
    else:
        err.print(f"[red]error:[/red] {escape(error.message)}", highlight=False)
    return typer.Exit(exit_code(error))


def exit_code(error: PreservationError) -> int:
    """1: the submission or the thing asked for; 2: the request itself; 3: the system."""
    if isinstance(error, InvalidRequestError | AccessError):
        return EXIT_USAGE
    if isinstance(error, InvalidSIPError | NotFoundError | ConflictError):
        return EXIT_INVALID
    return EXIT_SYSTEM


def in_context(as_json: bool, work: Callable[[Any], T]) -> T:
    """Run ``work(ctx)`` with a fresh Context, mapping our errors to exit codes.

    The context is always closed: that ends tape batches, whose index
    partitions are written at unmount.
    """
    from preservation.context import open_context

    settings = load_settings()
    try:
        ctx = open_context(settings)
    except PreservationError as e:
        raise fail(e, as_json) from e
    try:
        return work(ctx)
    except PreservationError as e:
        raise fail(e, as_json) from e
    finally:
        ctx.close()


def pending(error: PreservationError, as_json: bool) -> typer.Exit:
    """A SIP left waiting (a site down): not a failure of the bag, not yet safe either."""
    if as_json:
        out.print_json(data=error.to_dict() | {"state": "pending"})
    else:
        err.print(f"[yellow]pending:[/yellow] {escape(error.message)}", highlight=False)
        err.print(
            "the SIP is NOT yet safe (fewer than two verified copies); it is finished by "
            "`preservation resume`, `preservation watch` or `preservation repair` "
            "once the site is back",
            highlight=False,
        )
    return typer.Exit(EXIT_SYSTEM)


@contextmanager
def null() -> Iterator[None]:
    yield None


def usage(message: str, as_json: bool) -> typer.Exit:
    """A command line that cannot work as given: exit 2, as Click's own usage errors do."""
    if as_json:
        out.print_json(data={"error": "UsageError", "message": message} | _command())
    else:
        err.print(f"[red]error:[/red] {escape(message)}", highlight=False)
    return typer.Exit(EXIT_USAGE)


@contextmanager
def spinner(enabled: bool, what: str) -> Iterator[None]:
    """A spinner for long tape work that reports no steps, so a terminal never looks hung."""
    if not enabled or not err.is_terminal:
        yield
        return
    with err.status(what):
        yield


def human_size(n: int | None) -> str:
    """Decimal units, as tape vendors quote capacities (LTO-9 is 18 TB, not 16.4 TiB)."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(value) < 1000:
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} PB"


_STATE_STYLE = {"suspect": "yellow", "failed": "red", "retired": "dim"}


def check_site(ctx: Any, site: str | None) -> None:
    """Refuse a site name the settings do not know, rather than listing nothing for a typo."""
    if site is not None and site not in ctx.settings.sites:
        raise NotFoundError(
            f"no site {site!r}; configured: {', '.join(ctx.settings.sites)}", site=site
        )
