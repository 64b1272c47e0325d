"""`preservation siard`: export, bag, validate and load on the command line, with exit codes."""

from __future__ import annotations

import json
import time
import uuid
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from preservation.cli import app as cli
from preservation.errors import DestinationError, SiardError
from preservation.hotfolder import scan
from preservation.siard.bag import bag_siard
from preservation.sip.validation import validate_bag
from tests.siard_samples import create_sample_database


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("PRESERVATION_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    return CliRunner()


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("siard-cli")
    url = f"sqlite:///{folder / 'sample.sqlite'}"
    create_sample_database(url, rows=10)
    return url


def test_export_then_validate(runner: CliRunner, sample: str, tmp_path: Path) -> None:
    done = runner.invoke(
        cli,
        ["siard", "export", "--url", sample, "--to", "db.siard", "--data-owner", "City Archive"],
    )
    assert done.exit_code == 0, done.output
    assert "db.siard: 4 table(s), 40 row(s), 1 view(s) of schema(s) main" in done.stdout
    checked = runner.invoke(cli, ["siard", "validate", "db.siard", "--json"])
    assert checked.exit_code == 0, checked.output
    report = json.loads(checked.stdout)
    assert report["valid"] and report["tables"] == 4 and report["rows"] == 40
    again = runner.invoke(cli, ["siard", "export", "--url", sample, "--to", "db.siard"])
    assert again.exit_code == 2 and "already exists" in again.output


def test_export_as_json_and_schema_selection(runner: CliRunner, sample: str) -> None:
    done = runner.invoke(
        cli, ["siard", "export", "--url", sample, "--to", "x.siard", "--schema", "main", "--json"]
    )
    assert done.exit_code == 0, done.output
    summary = json.loads(done.stdout)
    assert summary["schemas"] == ["main"] and summary["tables"] == 4
    missing = runner.invoke(
        cli, ["siard", "export", "--url", sample, "--to", "y.siard", "--schema", "nope"]
    )
    assert missing.exit_code == 2
    assert "no schema 'nope'" in missing.output


def test_export_of_a_bad_url_says_which(runner: CliRunner, tmp_path: Path) -> None:
    gone = runner.invoke(
        cli, ["siard", "export", "--url", f"sqlite:///{tmp_path}/none.db", "--to", "x.siard"]
    )
    assert gone.exit_code == 2
    assert "no such database file" in gone.output and "none.db" in gone.output
    refused = runner.invoke(
        cli,
        [
            "siard",
            "export",
            "--url",
            "postgresql://someone:hunter2@127.0.0.1:1/db",
            "--to",
            "x.siard",
            "--json",
        ],
    )
    assert refused.exit_code == 2
    error = json.loads(refused.stdout)
    assert error["error"] == "InvalidRequestError"
    assert "127.0.0.1:1/db" in error["message"] and "hunter2" not in error["message"]
    nonsense = runner.invoke(cli, ["siard", "export", "--url", "nonsense", "--to", "x.siard"])
    assert nonsense.exit_code == 2 and "not a database URL" in nonsense.output
    assert not Path("x.siard").exists()


def test_a_port_that_is_not_a_number_exits_2_without_a_traceback(
    runner: CliRunner, sample: str
) -> None:
    url = "postgresql://someone:hunter2@db.example:notaport/db"
    for command in (
        ["siard", "export", "--url", url, "--to", "x.siard", "--json"],
        ["siard", "load", "a.siard", "--url", url, "--json"],
    ):
        if command[1] == "load":
            assert runner.invoke(cli, ["siard", "export", "--url", sample, "--to", "a.siard"])
        done = runner.invoke(cli, command)
        assert done.exit_code == 2, done.output
        error = json.loads(done.stdout)
        assert error["error"] == "InvalidRequestError", error
        assert "a port is a number" in error["message"] and "hunter2" not in error["message"]


def test_validate_names_the_table_and_the_rule(
    runner: CliRunner, sample: str, tmp_path: Path
) -> None:
    assert (
        runner.invoke(cli, ["siard", "export", "--url", sample, "--to", "a.siard"]).exit_code == 0
    )
    with zipfile.ZipFile("a.siard") as zf:
        entries = {n: zf.read(n) for n in zf.namelist() if not n.endswith("/")}
    metadata = entries["header/metadata.xml"].decode()
    entries["header/metadata.xml"] = metadata.replace(
        "<rows>5</rows>", "<rows>6</rows>", 1
    ).encode()
    with zipfile.ZipFile("lying.siard", "w") as zf:
        zf.mkdir("header/siardversion/2.2")
        for name, data in entries.items():
            zf.writestr(name, data)
    done = runner.invoke(cli, ["siard", "validate", "lying.siard"])
    assert done.exit_code == 1, done.output
    assert "main.department" in done.stdout and "row-count" in done.stdout
    assert "INVALID" in done.stdout


def test_bag_for_the_hot_folder(runner: CliRunner, sample: str, tmp_path: Path) -> None:
    assert (
        runner.invoke(cli, ["siard", "export", "--url", sample, "--to", "db.siard"]).exit_code == 0
    )
    inbox = tmp_path / "ingest" / "museum"
    inbox.mkdir(parents=True)
    done = runner.invoke(
        cli,
        [
            "siard",
            "bag",
            "db.siard",
            "--to",
            str(inbox / "sample-db"),
            "--info",
            "Source-Organization=City Archive",
            "--info",
            "External-Identifier=DB-1",
        ],
    )
    assert done.exit_code == 0, done.output
    bag = inbox / "sample-db"
    assert (bag / "data" / "db.siard").read_bytes() == Path("db.siard").read_bytes()
    info = (bag / "bag-info.txt").read_text()
    for line in (
        "Source-Organization: City Archive",
        "External-Identifier: DB-1",
        "Title: Database sample.sqlite",
        "Payload-Oxum: ",
    ):
        assert line in info
    assert validate_bag(bag).valid
    (candidate,) = scan(tmp_path / "ingest", quiescent_seconds=1, now=time.time() + 60)
    assert candidate.ready and candidate.path == bag
    assert [p.name for p in inbox.iterdir()] == ["sample-db"]  # no work folder left behind

    twice = runner.invoke(cli, ["siard", "bag", "db.siard", "--to", str(bag)])
    assert twice.exit_code != 0 and "already exists" in twice.output
    bad_info = runner.invoke(cli, ["siard", "bag", "db.siard", "--to", "b", "--info", "x"])
    assert bad_info.exit_code == 2 and "Label=value" in bad_info.output


def test_bag_names_the_payload_it_made(runner: CliRunner, sample: str) -> None:
    # A file without the .siard suffix is bagged as name.siard: say that name.
    assert (
        runner.invoke(cli, ["siard", "export", "--url", sample, "--to", "db.siard"]).exit_code == 0
    )
    Path("db.siard").rename("x.zip")
    done = runner.invoke(cli, ["siard", "bag", "x.zip", "--to", "b", "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["payload"] == "data/x.zip.siard"
    assert Path("b/data/x.zip.siard").is_file()
    plain = runner.invoke(cli, ["siard", "bag", "x.zip", "--to", "c"])
    assert plain.exit_code == 0 and "data/x.zip.siard" in plain.output


def test_bag_refuses_what_is_not_siard(runner: CliRunner, tmp_path: Path) -> None:
    Path("notes.siard").write_text("not a zip")
    done = runner.invoke(cli, ["siard", "bag", "notes.siard", "--to", "bag"])
    assert done.exit_code == 2
    assert "notes.siard" in done.output and "not a readable zip" in done.output
    with zipfile.ZipFile("empty.siard", "w") as zf:
        zf.writestr("content/x.txt", "x")
    with pytest.raises(SiardError) as caught:
        bag_siard(Path("empty.siard"), tmp_path / "bag")
    assert caught.value.rule == "structure" and "metadata.xml" in caught.value.message
    missing = runner.invoke(cli, ["siard", "bag", "nowhere.siard", "--to", "bag"])
    assert missing.exit_code == 2 and "nowhere.siard" in missing.output
    assert not Path("bag").exists()


def test_bag_needs_a_folder_to_go_in(sample: str, tmp_path: Path) -> None:
    from preservation.siard.export import export_database

    export_database(sample, tmp_path / "db.siard")
    with pytest.raises(DestinationError):
        bag_siard(tmp_path / "db.siard", tmp_path / "no" / "bag")


def test_load_back_into_sqlite(runner: CliRunner, sample: str, tmp_path: Path) -> None:
    assert (
        runner.invoke(cli, ["siard", "export", "--url", sample, "--to", "db.siard"]).exit_code == 0
    )
    target = f"sqlite:///{tmp_path / 'copy.sqlite'}"
    done = runner.invoke(cli, ["siard", "load", "db.siard", "--url", target, "--json"])
    assert done.exit_code == 0, done.output
    summary = json.loads(done.stdout)
    assert summary["tables"] == 4 and summary["rows"] == 40
    engine = sa.create_engine(target)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM everything").scalar() == 14
    engine.dispose()
    unreachable = runner.invoke(
        cli, ["siard", "load", "db.siard", "--url", "postgresql://u:pw@127.0.0.1:1/x"]
    )
    assert unreachable.exit_code != 0 and "pw@" not in unreachable.output


def test_help_documents_the_options(runner: CliRunner) -> None:
    export = runner.invoke(cli, ["siard", "export", "--help"], env={"COLUMNS": "200"})
    assert export.exit_code == 0
    for option in (
        "--lob-threshold",
        "--data-owner",
        "--data-origin-timespan",
        "--description",
        "--schema",
    ):
        assert option in export.output
    assert "will not pass" in export.output and "UTF-8" in export.output
    bag = runner.invoke(cli, ["siard", "bag", "--help"], env={"COLUMNS": "200"})
    assert bag.exit_code == 0 and "--info" in bag.output and "bag-info.txt" in bag.output


def test_export_of_bytes_that_are_not_utf8_is_refused(runner: CliRunner, tmp_path: Path) -> None:
    db = tmp_path / "bad.sqlite"
    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)")
        conn.exec_driver_sql("INSERT INTO t VALUES (1, 'a'), (2, x'ff')")
    engine.dispose()
    done = runner.invoke(
        cli, ["siard", "export", "--url", f"sqlite:///{db}", "--to", "bad.siard", "--json"]
    )
    assert done.exit_code == 2, done.output
    error = json.loads(done.stdout)
    assert "main.t, column 'name', row 2" in error["message"]
    assert "not UTF-8" in error["message"]
    assert not Path("bad.siard").exists()


def _pg(url: str, *statements: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement.encode())


@pytest.fixture
def pg_plain(pg_database: Callable[[], str]) -> str:
    """A throwaway database's URL as psycopg takes it (the role tests connect with libpq)."""
    return pg_database().replace("postgresql+psycopg://", "postgresql://")


@pytest.mark.postgres
def test_export_of_a_table_the_user_may_not_read(runner: CliRunner, pg_plain: str) -> None:
    role = f"siard_cli_{uuid.uuid4().hex[:8]}"
    _pg(
        pg_plain,
        "CREATE TABLE open_t (id int)",
        "CREATE TABLE secret (id int)",
        "INSERT INTO secret VALUES (1)",
        f"CREATE ROLE {role} LOGIN",
        f"GRANT USAGE ON SCHEMA public TO {role}",
        f"GRANT SELECT ON open_t TO {role}",
    )
    try:
        url = sa.make_url(pg_plain).set(username=role)
        for extra in ([], ["--json"]):
            done = runner.invoke(
                cli,
                ["siard", "export", "--url", url.render_as_string(False), "--to", "s.siard"]
                + extra,
            )
            assert done.exit_code == 2, done.output
            assert "Traceback" not in done.output
            assert "public.secret: cannot be read: permission denied" in done.output
            assert not Path("s.siard").exists()
            assert [p.name for p in Path.cwd().iterdir() if "siard" in p.name] == []
    finally:
        _pg(pg_plain, f"DROP OWNED BY {role}", f"DROP ROLE {role}")


@pytest.mark.postgres
def test_export_warns_of_values_siard_cannot_hold(runner: CliRunner, pg_plain: str) -> None:
    _pg(
        pg_plain,
        "CREATE TABLE t (n numeric, d date)",
        "INSERT INTO t VALUES (1, '2024-01-01'), ('NaN', 'infinity'), (2, '0001-01-01 BC')",
    )
    url = pg_plain.replace("postgresql://", "postgresql+psycopg://")
    done = runner.invoke(cli, ["siard", "export", "--url", url, "--to", "w.siard", "--json"])
    assert done.exit_code == 0, done.output
    summary = json.loads(done.stdout)
    (warning,) = summary["warnings"]
    assert warning.startswith("public.t: 3 value(s)")
    plain = runner.invoke(cli, ["siard", "export", "--url", url, "--to", "w2.siard"])
    assert plain.exit_code == 0 and "warning: public.t: 3 value(s)" in plain.output
    invalid = runner.invoke(cli, ["siard", "validate", "w.siard"])
    assert invalid.exit_code == 1


def test_load_says_which_names_sqlite_made_different(
    runner: CliRunner, tmp_path: Path, pg_database: Callable[[], str]
) -> None:
    """Columns PostgreSQL keeps apart (Name, name) meet in SQLite: the load says so."""
    source = pg_database()
    engine = sa.create_engine(source)
    with engine.begin() as conn:
        conn.exec_driver_sql('CREATE TABLE t ("Name" text, name text)')
        conn.exec_driver_sql("INSERT INTO t VALUES ('a', 'b')")
    engine.dispose()
    exported = runner.invoke(cli, ["siard", "export", "--url", source, "--to", "mixed.siard"])
    assert exported.exit_code == 0, exported.output
    target = f"sqlite:///{tmp_path / 'mixed.sqlite'}"
    done = runner.invoke(cli, ["siard", "load", "mixed.siard", "--url", target, "--json"])
    assert done.exit_code == 0, done.output
    renamed = json.loads(done.stdout)["renamed"]
    assert len(renamed) == 1 and "name_2" in renamed[0]
    again = runner.invoke(cli, ["siard", "load", "mixed.siard", "--url", target, "--replace"])
    assert again.exit_code == 0, again.output
    assert "note: " in again.output and "name_2" in again.output
