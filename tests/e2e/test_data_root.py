"""A data root or catalogue the pipeline cannot use as it is: one line naming it and the fix.

Operators meet these on the first day (PRESERVATION_HOME pointed at the wrong
thing, a catalogue restored badly, an archive copy on read-only media, a
catalogue lost beside tapes full of data); each must end in a clear refusal or
a working read-only archive, never in a traceback or in tapes written over.

Read-only media are made for real (a read-only bind mount, else the immutable
attribute), because tests run as root and root ignores permission bits.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import bagit
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner, Result

from preservation.catalog import SIP, session_scope
from preservation.cli import app
from preservation.config import Settings
from preservation.context import open_context
from preservation.errors import DataRootError

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "examples" / "bags" / "sample-collection"
TENANT = "museum"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
ENV = {"PRESERVATION_TAPE_CARTRIDGES_PER_SITE": "3", "PRESERVATION_TAPE_CAPACITY": str(256 << 20)}
UNKNOWN_AIP = "00000000-0000-0000-0000-000000000000"


# -- helpers -----------------------------------------------------------------------------------


def _run_quiet(*cmd: str) -> bool:
    return subprocess.run(cmd, capture_output=True, check=False).returncode == 0


@contextmanager
def read_only(path: Path, *, immutable: bool = False) -> Iterator[None]:
    """Make ``path`` and all under it unwritable for root too, for the block.

    A read-only bind mount is what read-only media look like; where mounts are
    not allowed, the immutable attribute is the next best (root cannot write
    through it either). Skips when neither works, except under CI.
    ``immutable`` insists on the attribute (and only skips without it: the
    default way is what CI insists on).
    """
    path = path.resolve()
    if immutable:
        if not _run_quiet("chattr", "-R", "+i", str(path)):
            pytest.skip(f"chattr +i does not work on {path} here")
        try:
            yield
        finally:
            _run_quiet("chattr", "-R", "-i", str(path))
        return
    if _run_quiet("mount", "--bind", str(path), str(path)):
        if _run_quiet("mount", "-o", "remount,ro,bind", str(path)):
            try:
                yield
            finally:
                if not _run_quiet("umount", str(path)):
                    _run_quiet("umount", "-l", str(path))
            return
        _run_quiet("umount", str(path))
    if _run_quiet("chattr", "-R", "+i", str(path)):
        try:
            yield
        finally:
            _run_quiet("chattr", "-R", "-i", str(path))
        return
    message = f"cannot make {path} read-only here (no bind mount, no chattr +i)"
    if IN_CI:
        pytest.fail(message + " (CI=true: these tests must run, not skip)")
    pytest.skip(message)


def cli(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def refused(result: Result, code: int, *needles: str) -> str:
    """Assert one clean ``error:`` line (no traceback) holding every needle; return it."""
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    flat = " ".join(result.stderr.split())
    for needle in needles:
        assert needle in flat, (needle, result.stderr)
    return flat


def as_json(*args: str, code: int = 0) -> Any:
    result = cli(*args, "--json")
    assert result.exit_code == code, (args, result.exit_code, result.output, result.exception)
    return json.loads(result.stdout)


def tree_state(path: Path) -> dict[str, tuple[int, int]]:
    """Every entry's size and mtime: proof that nothing under ``path`` was written."""
    state: dict[str, tuple[int, int]] = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            state[str(p.relative_to(path))] = (st.st_size if p.is_file() else 0, st.st_mtime_ns)
    return state


def commands(home: Path, tmp: Path) -> dict[str, list[str]]:
    """Every command that uses the data root, with arguments that work on a healthy one.

    ``validate`` is not among them: it needs no data root at all.
    """
    return {
        "status": ["status"],
        "show": ["show", UNKNOWN_AIP],
        "tape ls": ["tape", "ls"],
        "tape show": ["tape", "show", "A00001L9"],
        "recover": ["recover", UNKNOWN_AIP, "--to", str(tmp / "out")],
        "ingest": ["ingest", str(SAMPLE), "--tenant", TENANT],
        "watch": ["watch", "--once"],
        "resume": ["resume"],
        "audit": ["audit"],
        "repair": ["repair"],
        "db upgrade": ["db", "upgrade"],
    }


COMMANDS = list(commands(Path(), Path()))
WRITERS = ["ingest", "watch", "resume", "audit", "repair", "db upgrade"]


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One populated data root (the sample ingested into a fresh root), copied per test."""
    home = tmp_path_factory.mktemp("archive") / "home"
    with pytest.MonkeyPatch.context() as mp:
        for key, value in ENV.items():
            mp.setenv(key, value)
        mp.setenv("PRESERVATION_HOME", str(home))
        aip_id = as_json("ingest", str(SAMPLE), "--tenant", TENANT)["aip_id"]
        cartridges = as_json("tape", "ls")
    return {"home": home, "aip_id": aip_id, "cartridges": cartridges}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    return monkeypatch


@pytest.fixture
def home(archive: dict[str, Any], tmp_path: Path, env: pytest.MonkeyPatch) -> Path:
    """A private copy of the populated archive, as PRESERVATION_HOME."""
    home = tmp_path / "home"
    shutil.copytree(archive["home"], home, symlinks=True)
    env.setenv("PRESERVATION_HOME", str(home))
    return home


# -- 1. PRESERVATION_HOME unusable ---------------------------------------------------------------


@pytest.mark.parametrize("command", COMMANDS)
def test_home_that_is_a_file_is_refused_by_every_command(
    command: str, tmp_path: Path, env: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    home.write_text("not a folder\n")
    env.setenv("PRESERVATION_HOME", str(home))
    refused(cli(*commands(home, tmp_path)[command]), 3, str(home), "is a file", "PRESERVATION_HOME")
    assert home.read_text() == "not a folder\n"


@pytest.mark.parametrize("command", ["tape ls", "ingest", "audit", "repair"])
def test_a_file_where_a_site_folder_should_be_is_one_line(
    command: str, tmp_path: Path, env: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    (home / "tape").mkdir(parents=True)
    (home / "tape" / "site-a").write_text("not a library\n")
    env.setenv("PRESERVATION_HOME", str(home))
    refused(cli(*commands(home, tmp_path)[command]), 3, "site site-a", str(home / "tape"))
    assert (home / "tape" / "site-a").read_text() == "not a library\n"
    if command == "ingest":  # refused at the door: no SIP registered
        ctx = open_context(Settings(home=home))
        try:
            with session_scope(ctx.sessions) as s:
                assert s.scalar(select(func.count()).select_from(SIP)) == 0
        finally:
            ctx.close()


@pytest.mark.parametrize("command", COMMANDS)
def test_home_under_a_file_cannot_be_created(
    command: str, tmp_path: Path, env: pytest.MonkeyPatch
) -> None:
    (tmp_path / "parent").write_text("")
    home = tmp_path / "parent" / "home"
    env.setenv("PRESERVATION_HOME", str(home))
    refused(cli(*commands(home, tmp_path)[command]), 3, str(home), "not a folder")


@pytest.mark.parametrize("command", ["status", "tape ls", "ingest"])
def test_home_on_read_only_media_cannot_be_created(
    command: str, tmp_path: Path, env: pytest.MonkeyPatch
) -> None:
    media = tmp_path / "media"
    media.mkdir()
    home = media / "home"
    env.setenv("PRESERVATION_HOME", str(home))
    with read_only(media):
        refused(cli(*commands(home, tmp_path)[command]), 3, str(home), "cannot create")
    assert not home.exists()


def test_home_permission_denied_is_one_line(tmp_path: Path, env: pytest.MonkeyPatch) -> None:
    """Root cannot be denied a mkdir, so the operating system's refusal is staged."""
    home = tmp_path / "home"
    env.setenv("PRESERVATION_HOME", str(home))
    real_mkdir = Path.mkdir

    def denied(self: Path, *args: Any, **kwargs: Any) -> None:
        if self == home:
            raise PermissionError(13, "Permission denied", str(self))
        real_mkdir(self, *args, **kwargs)

    env.setattr(Path, "mkdir", denied)
    text = refused(cli("status"), 3, str(home), "cannot create", "ermission denied")
    assert "PRESERVATION_HOME" in text
    data = as_json("ingest", str(SAMPLE), "--tenant", TENANT, code=3)
    assert data["error"] == "DataRootError" and data["path"] == str(home)


@pytest.mark.parametrize("command", WRITERS)
def test_writing_commands_on_a_read_only_root_say_so(command: str, home: Path) -> None:
    before = tree_state(home)
    with read_only(home):
        refused(cli(*commands(home, home.parent)[command]), 3, str(home), "read-only")
    assert tree_state(home) == before


# -- 2. the catalogue is not a database ---------------------------------------------------------


def _text_file(path: Path) -> None:
    path.write_text("this is not a catalogue\n")


def _truncated(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def _garbage_header(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[:100] = bytes(range(100))
    path.write_bytes(bytes(data))


DAMAGE = {"text file": _text_file, "truncated": _truncated, "garbage header": _garbage_header}


@pytest.mark.parametrize("damage", list(DAMAGE))
@pytest.mark.parametrize("command", ["status", "show", "tape ls", "ingest", "audit", "recover"])
def test_catalogue_that_is_not_a_database_is_refused(command: str, damage: str, home: Path) -> None:
    catalogue = home / "catalog.sqlite"
    DAMAGE[damage](catalogue)
    before = catalogue.read_bytes()
    text = refused(
        cli(*commands(home, home.parent)[command]), 3, str(catalogue), "backup", "move it aside"
    )
    assert "not a catalogue" in text or "damaged" in text
    assert catalogue.read_bytes() == before  # never "repaired" by a migration


def test_damaged_catalogue_on_read_only_media_is_refused(home: Path) -> None:
    catalogue = home / "catalog.sqlite"
    _truncated(catalogue)
    with read_only(home):
        refused(cli("status"), 3, str(catalogue), "backup")


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_open_context_translates_the_database_error_and_chains_it(
    damage: str, tmp_path: Path, archive: dict[str, Any]
) -> None:
    from sqlalchemy.exc import DBAPIError

    from preservation.context import open_context

    home = tmp_path / "home"
    shutil.copytree(archive["home"], home)
    DAMAGE[damage](home / "catalog.sqlite")
    with pytest.raises(DataRootError) as info:
        open_context(Settings(home=home))
    assert info.value.path == str(home / "catalog.sqlite")
    cause = info.value.__cause__
    assert isinstance(cause, DBAPIError | sqlite3.DatabaseError), repr(cause)


# -- 3. recover --to a folder that cannot be made -------------------------------------------------


@pytest.fixture
def mounts(env: pytest.MonkeyPatch) -> list[str]:
    """Every cartridge the emulated libraries load in this test."""
    from preservation.storage.library import EmulatedLibrary

    loaded: list[str] = []
    real = EmulatedLibrary.mount

    def mount(self: EmulatedLibrary, barcode: str) -> Any:
        loaded.append(barcode)
        return real(self, barcode)

    env.setattr(EmulatedLibrary, "mount", mount)
    return loaded


def test_recover_under_a_file_reads_no_tape(
    home: Path, archive: dict[str, Any], tmp_path: Path, mounts: list[str]
) -> None:
    (tmp_path / "a-file").write_text("")
    to = tmp_path / "a-file" / "out"
    result = cli("recover", archive["aip_id"], "--to", str(to))
    refused(result, 3, str(to), "not a folder")
    assert mounts == []


@pytest.mark.parametrize(
    "where",
    ["/proc/no-such-folder/out", "long-name"],
)
def test_recover_where_the_kernel_refuses_reads_no_tape(
    home: Path, archive: dict[str, Any], tmp_path: Path, mounts: list[str], where: str
) -> None:
    """Folders no permission bit can predict: /proc, a name too long for the file system."""
    to = tmp_path / ("x" * 300) / "out" if where == "long-name" else Path(where)
    result = cli("recover", archive["aip_id"], "--to", str(to))
    refused(result, 3, "cannot write to", "choose another --to folder")
    assert mounts == []
    failed = json.loads(cli("recover", archive["aip_id"], "--to", str(to), "--json").stdout)
    assert failed["error"] == "DestinationError"


def test_recover_onto_read_only_media_reads_no_tape(
    home: Path, archive: dict[str, Any], tmp_path: Path, mounts: list[str]
) -> None:
    media = tmp_path / "media"
    media.mkdir()
    for to in (media, media / "deeper" / "out"):
        with read_only(media):
            result = cli("recover", archive["aip_id"], "--to", str(to))
        refused(result, 3, str(to), "read-only")
    assert mounts == []
    assert list(media.iterdir()) == []
    # The same archive recovers fine to a folder that can be made.
    bag = Path(as_json("recover", archive["aip_id"], "--to", str(tmp_path / "ok"))["bag"])
    bagit.Bag(str(bag)).validate()
    assert mounts


# -- 4. a read-only archive can still be read ------------------------------------------------------


@pytest.mark.parametrize("immutable", [False, True], ids=["read-only media", "immutable"])
def test_read_only_archive_serves_status_show_tape_ls_and_recover(
    home: Path, archive: dict[str, Any], tmp_path: Path, immutable: bool
) -> None:
    aip_id = archive["aip_id"]
    barcode = next(c["barcode"] for c in archive["cartridges"] if c["copies"])
    before = tree_state(home)
    with read_only(home, immutable=immutable):
        status = as_json("status")
        assert status["counts"] == {"committed": 1}
        shown = as_json("show", aip_id)
        assert shown["aip_id"] == aip_id and shown["state"] == "active"
        assert as_json("tape", "ls") == archive["cartridges"]
        assert as_json("tape", "show", barcode)["contents"]
        text = cli("status")
        assert text.exit_code == 0 and "committed" in text.stdout
        bag = Path(as_json("recover", aip_id, "--to", str(tmp_path / "out"))["bag"])
        bagit.Bag(str(bag)).validate()
        assert list((tmp_path / "out").iterdir()) == [bag]  # no temporary left beside it
        zipped = shutil.make_archive(str(tmp_path / "bag"), "zip", SAMPLE.parent, SAMPLE.name)
        checked = cli("validate", zipped)  # unpacks elsewhere than the read-only root
        assert checked.exit_code == 0, checked.output
    assert tree_state(home) == before


def test_read_only_context_writes_nothing_on_a_writable_root(
    home: Path, archive: dict[str, Any], tmp_path: Path
) -> None:
    """``open_context(read_only=True)`` reads an archive copy without touching it.

    On a writable folder SQLite's read-only connection still makes its
    shared-memory index (``-shm``, and an empty ``-wal``) beside the catalogue,
    as any reader of a WAL database does; those are not the archive's data.
    """
    from preservation.context import open_context
    from preservation.inventory import describe_aip
    from preservation.storage.recovery import recover
    from preservation.storage.service import list_cartridges

    before = tree_state(home)
    ctx = open_context(Settings(), read_only=True)
    try:
        assert ctx.read_only
        assert describe_aip(ctx, archive["aip_id"])["aip_id"] == archive["aip_id"]
        assert list_cartridges(ctx) == archive["cartridges"]
        bag = recover(ctx, archive["aip_id"], 1, dest_dir=tmp_path / "out")
        bagit.Bag(str(bag)).validate()
    finally:
        ctx.close()
    after = tree_state(home)
    for name in ("catalog.sqlite-shm", "catalog.sqlite-wal"):
        after.pop(name, None)
    assert after == before


def test_read_only_root_with_an_older_schema_is_refused(
    tmp_path: Path, env: pytest.MonkeyPatch
) -> None:
    from preservation.catalog import upgrade

    home = tmp_path / "home"
    home.mkdir()
    upgrade(f"sqlite:///{home / 'catalog.sqlite'}", "0001")
    env.setenv("PRESERVATION_HOME", str(home))
    with read_only(home):
        text = refused(cli("status"), 3, str(home / "catalog.sqlite"), "db upgrade")
    assert "0001" in text and "read-only" in text


def test_read_only_root_without_a_catalogue_is_refused(
    tmp_path: Path, env: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env.setenv("PRESERVATION_HOME", str(home))
    with read_only(home):
        refused(cli("status"), 3, str(home), "read-only", "no catalogue")


# -- 5. an empty catalogue beside tapes that hold data ------------------------------------------


@pytest.mark.parametrize("command", ["tape ls", "ingest", "repair"])
def test_empty_catalogue_beside_written_tapes_is_refused(
    command: str, home: Path, archive: dict[str, Any]
) -> None:
    (home / "catalog.sqlite").unlink()
    tapes = tree_state(home / "tape")
    written = [c for c in archive["cartridges"] if c["volume_uuid"]]
    assert {c["site"] for c in written} == {"site-a", "site-b"}
    text = refused(
        cli(*commands(home, home.parent)[command]), 3, "catalogue", "move the tape folder aside"
    )
    assert "empty" in text and str(home / "tape") in text
    for c in written:
        assert c["site"] in text and c["barcode"] in text and c["volume_uuid"] in text
    assert tree_state(home / "tape") == tapes  # nothing formatted, nothing appended
    if command == "ingest":  # refused at the door: no SIP left short of its store stage
        ctx = open_context(Settings(home=home))
        try:
            with session_scope(ctx.sessions) as s:
                assert s.scalar(select(func.count()).select_from(SIP)) == 0
        finally:
            ctx.close()


def test_fresh_data_root_still_ingests_and_lists_scratch_cartridges(
    tmp_path: Path, env: pytest.MonkeyPatch
) -> None:
    env.setenv("PRESERVATION_HOME", str(tmp_path / "fresh"))
    cartridges = as_json("tape", "ls")
    assert len(cartridges) == 6 and {c["state"] for c in cartridges} == {"scratch"}
    assert as_json("ingest", str(SAMPLE), "--tenant", TENANT)["state"] == "committed"


def test_a_data_root_named_with_url_characters_keeps_its_catalogue_inside(
    tmp_path: Path, env: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "archive 100%41 ?copy#2"
    env.setenv("PRESERVATION_HOME", str(home))
    assert as_json("status")["counts"] == {}
    assert (home / "catalog.sqlite").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == [home.name]
    with read_only(home):
        assert as_json("status")["counts"] == {}
