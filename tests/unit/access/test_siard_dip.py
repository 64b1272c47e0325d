"""preservation/access/package.py: an access DIP gives a SIARD as a SQLite database and CSVs.

``build_dip`` is called as the recall batch calls it, on a version tar made
here: the SIARD is the sample database exported, with a text file beside it.
No format policy is passed: the tables are made whatever the policy says.
"""

from __future__ import annotations

import hashlib
import sqlite3
import tarfile
import uuid
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote

import pytest
from lxml import etree

from preservation.access.package import SOFTWARE, build_dip
from preservation.access.service import Selected
from preservation.metadata import validate_mets, validate_premis
from preservation.metadata.dip import DipDescription
from preservation.metadata.mets import METS_NS, PREMIS_NS
from preservation.siard.load import flat_names
from preservation.siard.reader import open_siard
from tests.siard_edits import clashing_columns, clashing_tables

M = f"{{{METS_NS}}}"
P = f"{{{PREMIS_NS}}}"
XLINK_HREF = "{http://www.w3.org/1999/xlink}href"
NOTES = b"Read the tables in register.sqlite or register-csv/.\n"


@dataclass
class Dip:
    root: Path  # the extracted bag
    aip_id: str
    data: Path  # representations/access/data


def make_dip(tmp_path: Path, siard_bytes: bytes, puid: str = "fmt/1777") -> Dip:
    aip_id = str(uuid.uuid4())
    members = {
        "data/representations/preservation/data/db/register.siard": (siard_bytes, puid),
        "data/representations/preservation/data/notes.txt": (NOTES, "x-fmt/111"),
    }
    tar_path = tmp_path / "v1.tar"
    with tarfile.open(tar_path, "w") as tar:
        for member, (data, _) in members.items():
            source = tmp_path / "member"
            source.write_bytes(data)
            tar.add(source, arcname=f"{aip_id}.v1/{member}")
    selection = [
        Selected(
            file_id=n,
            version=1,
            member=member,
            path=member.removeprefix("data/representations/preservation/data/"),
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            puid=puid,
            mime=None,
            format_name=None,
            derived_from=None,
        )
        for n, (member, (data, puid)) in enumerate(members.items(), 1)
    ]
    dip = DipDescription(
        dip_id=f"dip-{uuid.uuid4()}",
        aip_id=aip_id,
        aip_version=1,
        tenant="registry",
        kind="access",
        created=datetime.now(UTC),
        requested_by="reader@registry",
        software=SOFTWARE,
    )
    steps: list[str] = []
    built = build_dip(
        dip,
        selection,
        {1: tar_path},
        tmp_path / "cache" / "dip.zip",
        work=tmp_path / "work",
        progress=lambda step, done, total: steps.append(step),
    )
    assert "render" in steps and "build" in steps
    with zipfile.ZipFile(built.path) as zf:
        assert zf.testzip() is None
        zf.extractall(tmp_path / "dip")
    root = tmp_path / "dip" / dip.dip_id
    payload = [p for p in (root / "data" / "representations").rglob("*") if p.is_file()]
    assert built.files == len(payload)
    return Dip(root, aip_id, root / "data" / "representations" / "access" / "data")


def manifest(root: Path) -> dict[str, str]:
    lines = (root / "manifest-sha256.txt").read_text(encoding="utf-8").splitlines()
    return {path: digest for digest, path in (line.split("  ", 1) for line in lines)}


def premis_events(root: Path) -> list[tuple[str, str, str, list[str], str]]:
    premis = root / "data" / "metadata" / "preservation" / "premis.xml"
    assert validate_premis(premis) == []
    return [
        (
            e.findtext(P + "eventType") or "",
            e.findtext(f"{P}eventOutcomeInformation/{P}eventOutcome") or "",
            e.findtext(f"{P}eventDetailInformation/{P}eventDetail") or "",
            [
                link.findtext(P + "linkingObjectIdentifierValue") or ""
                for link in e.iter(P + "linkingObjectIdentifier")
                if link.findtext(P + "linkingObjectRole") == "outcome"
            ],
            " ".join(n.text or "" for n in e.iter(P + "eventOutcomeDetailNote")),
        )
        for e in etree.parse(str(premis)).getroot().iter(P + "event")
    ]


def test_a_siard_is_given_as_a_sqlite_database_and_one_csv_per_table(tmp_path: Path) -> None:
    from preservation.siard.export import export_database
    from tests.siard_samples import create_sample_database

    source = tmp_path / "source.sqlite"
    create_sample_database(f"sqlite:///{source}")
    siard = tmp_path / "register.siard"
    export_database(f"sqlite:///{source}", siard)
    with open_siard(siard) as reader:
        archive = reader.archive
        rows = {t.name: len(list(reader.rows(s, t))) for s, t in archive.tables()}
    names = flat_names(archive)

    dip = make_dip(tmp_path, siard.read_bytes())
    files = sorted(str(p.relative_to(dip.data)) for p in dip.data.rglob("*") if p.is_file())
    csvs = sorted(f"db/register-csv/{names[(s.name, t.name)]}.csv" for s, t in archive.tables())
    assert files == sorted(["db/register.sqlite", "notes.txt", *csvs])  # no .siard
    assert (dip.data / "notes.txt").read_bytes() == NOTES

    # The SQLite tables hold the archived rows; each CSV has its header and the rows.
    with sqlite3.connect(dip.data / "db" / "register.sqlite") as conn:
        for schema, table in archive.tables():
            name = names[(schema.name, table.name)]
            count = conn.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0]
            assert count == rows[table.name] == table.rows, name
            header = (dip.data / f"db/register-csv/{name}.csv").read_bytes().split(b"\r\n")[0]
            assert header.decode("utf-8").split(",") == [c.name for c in table.columns]

    # Every payload file is in the manifest and the METS with its true digest.
    listed = manifest(dip.root)
    mets_path = dip.root / "data" / "METS.xml"
    assert validate_mets(mets_path) == []
    in_mets = {
        unquote(f.find(M + "FLocat").get(XLINK_HREF, "")): f.get("CHECKSUM")  # type: ignore[union-attr]
        for f in etree.parse(str(mets_path)).getroot().iter(M + "file")
    }
    for path in files:
        digest = hashlib.sha256((dip.data / path).read_bytes()).hexdigest()
        assert listed[f"data/representations/access/data/{path}"] == digest, path
        assert in_mets[f"representations/access/data/{path}"] == digest, path

    # One PREMIS event says what was made of the archive, linking every file made.
    (event,) = [e for e in premis_events(dip.root) if e[0] == "migration"]
    assert event[1] == "success"
    assert event[2].startswith("access rendition of db/register.siard by siard-tables")
    assert "fmt/729" in event[2] and "x-fmt/18" in event[2]
    assert len(event[3]) == 1 + len(csvs)


def test_a_siard_that_cannot_be_read_goes_as_it_is_and_premis_says_why(tmp_path: Path) -> None:
    broken = b"PK\x03\x04 not a zip at all"
    dip = make_dip(tmp_path, broken)
    files = sorted(str(p.relative_to(dip.data)) for p in dip.data.rglob("*") if p.is_file())
    assert files == ["db/register.siard", "notes.txt"]
    assert (dip.data / "db" / "register.siard").read_bytes() == broken
    (event,) = [e for e in premis_events(dip.root) if e[0] == "migration"]
    assert event[1] == "failure" and event[3] == []
    assert event[2].startswith("access rendition of db/register.siard")
    assert not list((tmp_path / "work").rglob("*.sqlite*"))


def test_tables_whose_names_clash_in_sqlite_are_numbered_not_sent_as_a_siard(
    tmp_path: Path,
) -> None:
    siard = clashing_tables(tmp_path, {b"<name>xrder</name>": b"<name>order</name>"}).read_bytes()
    dip = make_dip(tmp_path, siard)
    files = sorted(str(p.relative_to(dip.data)) for p in dip.data.rglob("*") if p.is_file())
    assert files == [
        "db/register-csv/Order.csv",
        "db/register-csv/order_2.csv",
        "db/register.sqlite",
        "notes.txt",
    ]
    with sqlite3.connect(dip.data / "db" / "register.sqlite") as conn:
        assert conn.execute("SELECT id FROM order_2").fetchall() == [(2,)]
    conn.close()
    (event,) = [e for e in premis_events(dip.root) if e[0] == "migration"]
    assert event[1] == "success"


@pytest.mark.parametrize(("puid", "version"), [("fmt/995", "SIARD 2.0"), ("fmt/161", "SIARD 1.0")])
def test_a_siard_of_a_version_whose_tables_are_not_read_goes_as_it_is(
    tmp_path: Path, puid: str, version: str
) -> None:
    siard = clashing_tables(tmp_path, {}).read_bytes()
    dip = make_dip(tmp_path, siard, puid)
    files = sorted(str(p.relative_to(dip.data)) for p in dip.data.rglob("*") if p.is_file())
    assert files == ["db/register.siard", "notes.txt"]
    assert (dip.data / "db" / "register.siard").read_bytes() == siard
    (event,) = [e for e in premis_events(dip.root) if e[0] == "migration"]
    assert event[1] == "failure" and event[3] == []
    assert version in event[4] and puid in event[4] and "sent as it is" in event[4]


def test_a_siard_refused_by_the_reader_is_named_by_its_path_in_the_aip(tmp_path: Path) -> None:
    siard = clashing_tables(tmp_path, {b"<rows>1</rows>": b"<rows>4</rows>"}).read_bytes()
    dip = make_dip(tmp_path, siard)
    files = sorted(str(p.relative_to(dip.data)) for p in dip.data.rglob("*") if p.is_file())
    assert files == ["db/register.siard", "notes.txt"]
    (event,) = [e for e in premis_events(dip.root) if e[0] == "migration"]
    assert event[1] == "failure"
    assert "not made (db/register.siard: main.Order: metadata.xml says 4 rows" in event[4]
    assert "source.siard" not in event[4]


@pytest.fixture(autouse=True)
def _no_leftovers(tmp_path: Path) -> object:
    yield None
    # Renditions are moved into the zip: nothing of them stays in the work folder.
    assert not [p for p in (tmp_path / "work").rglob("*") if p.is_file()]


def test_columns_whose_names_clash_in_sqlite_are_numbered_not_sent_as_a_siard(
    tmp_path: Path,
) -> None:
    dip = make_dip(tmp_path, clashing_columns(tmp_path, "Ada").read_bytes())
    files = sorted(str(p.relative_to(dip.data)) for p in dip.data.rglob("*") if p.is_file())
    assert files == ["db/register-csv/people.csv", "db/register.sqlite", "notes.txt"]
    header = (dip.data / "db/register-csv/people.csv").read_bytes().split(b"\r\n")[0]
    assert header == b"id,Name,name_2"
    with sqlite3.connect(dip.data / "db" / "register.sqlite") as conn:
        assert conn.execute('SELECT "Name", name_2 FROM people').fetchall() == [("Ada", "ada")]
    conn.close()
