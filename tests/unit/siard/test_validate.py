"""preservation/siard/validate.py: a sound archive passes; each kind of damage is one finding.

The archives are real: a small SQLite database exported by ``export_database``
(two tables, LOBs both inline and as files), and the sample database of every
common type exported from SQLite and PostgreSQL. Each bad archive is that good
one rewritten with ``zipfile`` (or patched byte by byte), and each must give
exactly the rule its damage breaks, naming the zip entry and the table.
"""

from __future__ import annotations

import re
import sqlite3
import struct
import uuid
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from preservation.siard.validate import Problem, SiardReport, validate_siard
from tests.siard_edits import rewrite, sub

BIG_NOTE = "long note, " * 500  # over the exporter's 4096-character threshold
BIG_PHOTO = bytes(range(256)) * 20  # 5120 bytes, over the threshold
CUSTOMERS = 20
ORDERS = 2500  # past the 1,024 rows after which read rows are dropped from the tree

TABLE0 = "content/schema0/table0/table0.xml"
XSD0 = "content/schema0/table0/table0.xsd"
TABLE1 = "content/schema0/table1/table1.xml"


def _source(path: Path) -> str:
    with sqlite3.connect(path) as conn:
        conn.executescript(
            """
            CREATE TABLE customers (
                id INTEGER PRIMARY KEY,
                name VARCHAR(40) NOT NULL,
                note TEXT,
                photo BLOB
            );
            CREATE TABLE orders (
                id INTEGER PRIMARY KEY,
                customer INTEGER NOT NULL REFERENCES customers (id),
                amount NUMERIC(10, 2),
                placed TIMESTAMP
            );
            """
        )
        for i in range(1, CUSTOMERS + 1):
            note = BIG_NOTE if i == 3 else (None if i % 4 == 0 else f"note {i} & <b>")
            photo = BIG_PHOTO if i == 5 else (None if i % 5 == 0 else bytes([i, 0, 255]))
            conn.execute(
                "INSERT INTO customers VALUES (?, ?, ?, ?)", (i, f"customer {i}", note, photo)
            )
        for i in range(1, ORDERS + 1):
            conn.execute(
                "INSERT INTO orders VALUES (?, ?, ?, ?)",
                (i, i % CUSTOMERS + 1, f"{i * 3}.25", f"2024-01-{i % 28 + 1:02d} 10:00:00"),
            )
    return f"sqlite:///{path}"


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small database as a SIARD archive, as the exporter writes it."""
    from preservation.siard.export import export_database

    where = tmp_path_factory.mktemp("validate")
    dest = where / "good.siard"
    export_database(_source(where / "source.sqlite"), dest)
    return dest


@pytest.fixture(scope="module")
def good_archive(good: Path) -> SiardReport:
    return validate_siard(good)


# -- rewriting archives --------------------------------------------------------------


def central_header(data: bytes, name: str) -> int:
    """Offset of ``name``'s central directory header in a zip's bytes."""
    encoded = name.encode()
    at = data.find(b"PK\x01\x02")
    while at >= 0:
        name_length = struct.unpack_from("<H", data, at + 28)[0]
        if data[at + 46 : at + 46 + name_length] == encoded:
            return at
        at = data.find(b"PK\x01\x02", at + 4)
    raise AssertionError(f"{name} not in the central directory")


def with_overlapping_entries(src: Path, dest: Path, names: list[str], size: int) -> Path:
    """``src`` plus a small overlapping zip bomb (David Fifield's construction) as ``names``.

    The last name's data is ``size`` bytes of ``a`` deflated; each earlier
    entry's deflate stream quotes the next entry's local header in a stored
    block and then runs on into that entry's data, so every entry is sound on
    its own (CRC-32, sizes, a ratio DEFLATE can reach) while all of them share
    the same bytes in the file.
    """
    with zipfile.ZipFile(src) as zin:
        entries = [(info, zin.read(info)) for info in zin.infolist()]
    plain = dest.with_suffix(".plain")
    with zipfile.ZipFile(plain, "w") as zout:
        for info, data in entries:
            zout.writestr(info, data)
    head = plain.read_bytes()
    plain.unlink()
    eocd = head.rfind(b"PK\x05\x06")
    count, cd_size, cd_offset = struct.unpack_from("<HLL", head, eocd + 10)
    central = head[cd_offset : cd_offset + cd_size]
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    kernel = compressor.compress(b"a" * size) + compressor.flush()

    def local(name: bytes, crc: int, packed: int, unpacked: int) -> bytes:
        return (
            struct.pack(
                "<4sHHHHHLLLHH",
                b"PK\x03\x04",
                20,
                0,
                8,
                0,
                0x21,
                crc,
                packed,
                unpacked,
                len(name),
                0,
            )
            + name
        )

    encoded = [n.encode() for n in names]
    # From the last entry back: each one's output is the next one's header, then its output.
    output = b"a" * size
    packed = len(kernel)
    headers: list[bytes] = [b""] * len(names)
    sizes: list[tuple[int, int, int]] = [(0, 0, 0)] * len(names)
    for i in range(len(names) - 1, -1, -1):
        if i < len(names) - 1:
            quoted = headers[i + 1]
            output = quoted + output
            packed = 5 + len(quoted) + packed
        crc = zlib.crc32(output)
        headers[i] = local(encoded[i], crc, packed, len(output))
        sizes[i] = (crc, packed, len(output))
    body = bytearray(head[:cd_offset])
    offsets = []
    for i, header in enumerate(headers):
        offsets.append(len(body))
        body += header
        if i < len(headers) - 1:
            length = len(headers[i + 1])
            body += b"\x00" + struct.pack("<HH", length, length ^ 0xFFFF)
    body += kernel
    added = b"".join(
        struct.pack(
            "<4sHHHHHHLLLHHHHHLL",
            b"PK\x01\x02",
            20,
            20,
            0,
            8,
            0,
            0x21,
            crc,
            packed_size,
            unpacked,
            len(name),
            0,
            0,
            0,
            0,
            0,
            offset,
        )
        + name
        for name, (crc, packed_size, unpacked), offset in zip(encoded, sizes, offsets, strict=True)
    )
    new_offset = len(body)
    body += central + added
    total = count + len(names)
    body += struct.pack(
        "<4sHHHHLLH", b"PK\x05\x06", 0, 0, total, total, len(central) + len(added), new_offset, 0
    )
    dest.write_bytes(bytes(body))
    with zipfile.ZipFile(dest) as zf:  # sound to zipfile, each entry on its own
        assert zf.read(names[0]) == output
    return dest


def lob_entries(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as zf:
        return [n for n in zf.namelist() if re.search(r"/lob\d+/record\d+\.(bin|txt)$", n)]


def rules(report: SiardReport) -> set[str]:
    return {p.rule for p in report.problems}


def only(report: SiardReport, rule: str) -> list[Problem]:
    """The problems, after checking they are all of ``rule`` (there is at least one)."""
    assert report.problems, "expected a problem"
    assert rules(report) == {rule}, report.problems
    assert not report.valid
    return report.problems


# -- the sound archive -------------------------------------------------------------------


def test_exported_archive_is_valid_with_its_figures(good_archive: SiardReport) -> None:
    report = good_archive
    assert report.problems == []
    assert report.valid
    assert report.version == "2.2"
    assert (report.schemas, report.tables, report.rows) == (1, 2, CUSTOMERS + ORDERS)
    assert report.source_dbms is not None and report.source_dbms.startswith("SQLite")
    assert report.archive is not None
    assert [t.name for _, t in report.archive.tables()] == ["customers", "orders"]
    # The LOB files: one note, one photo.
    assert (report.lob_count, report.lob_bytes) == (2, len(BIG_NOTE) + len(BIG_PHOTO))


def test_progress_counts_the_table_bytes(good: Path) -> None:
    seen: list[tuple[str, int, int]] = []
    validate_siard(good, progress=lambda step, done, total: seen.append((step, done, total)))
    tables = [(done, total) for step, done, total in seen if step == "tables"]
    with zipfile.ZipFile(good) as zf:
        size = zf.getinfo(TABLE0).file_size + zf.getinfo(TABLE1).file_size
    assert tables[-1] == (size, size)
    assert [d for d, _ in tables] == sorted(d for d, _ in tables)


# -- the zip ------------------------------------------------------------------------------


def test_not_a_zip(tmp_path: Path) -> None:
    path = tmp_path / "nothing.siard"
    path.write_bytes(b"this is not a zip at all" * 10)
    (problem,) = only(validate_siard(path), "zip")
    # A problem of the whole archive names it (no entry or table does).
    assert problem.message.startswith("nothing.siard is not a readable zip archive")


def test_truncated_zip(good: Path, tmp_path: Path) -> None:
    path = tmp_path / "cut.siard"
    data = good.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    only(validate_siard(path), "zip")


def test_flipped_byte_in_a_table_is_a_crc_error_naming_the_table(
    good: Path, tmp_path: Path
) -> None:
    data = bytearray(good.read_bytes())
    with zipfile.ZipFile(good) as zf:
        info = zf.getinfo(TABLE1)
    assert info.compress_type == zipfile.ZIP_STORED
    name_length, extra_length = struct.unpack_from("<HH", data, info.header_offset + 26)
    start = info.header_offset + 30 + name_length + extra_length
    data[start + info.compress_size // 2] ^= 0x01
    path = tmp_path / "flipped.siard"
    path.write_bytes(bytes(data))
    (problem,) = only(validate_siard(path), "zip")
    assert (problem.entry, problem.table) == (TABLE1, "main.orders")
    assert "CRC" in problem.message and TABLE1 in problem.message


def test_encrypted_entry(good: Path, tmp_path: Path) -> None:
    data = bytearray(good.read_bytes())
    at = central_header(bytes(data), XSD0)
    data[at + 8] |= 0x01
    path = tmp_path / "encrypted.siard"
    path.write_bytes(bytes(data))
    (problem,) = only(validate_siard(path), "zip")
    assert problem.entry == XSD0 and "G_4.1-3" in problem.message


def test_compression_other_than_deflate(good: Path, tmp_path: Path) -> None:
    path = rewrite(good, tmp_path / "bzip2.siard", drop={"header/metadata.xsd"})
    with zipfile.ZipFile(path, "a") as zf, zipfile.ZipFile(good) as src:
        zf.writestr("header/metadata.xsd", src.read("header/metadata.xsd"), zipfile.ZIP_BZIP2)
    (problem,) = only(validate_siard(path), "zip")
    assert problem.entry == "header/metadata.xsd" and "G_4.1-2" in problem.message


def test_absurd_declared_size(good: Path, tmp_path: Path) -> None:
    data = bytearray(good.read_bytes())
    at = central_header(bytes(data), XSD0)
    struct.pack_into("<I", data, at + 24, 0x7FFFFFFF)  # uncompressed size, stored entry
    path = tmp_path / "bomb.siard"
    path.write_bytes(bytes(data))
    (problem,) = only(validate_siard(path), "zip")
    assert problem.entry == XSD0 and "zip bomb" in problem.message


def test_overlapping_entries_are_a_bomb_refused_before_anything_is_inflated(
    good: Path, tmp_path: Path
) -> None:
    names = [f"content/schema0/table0/lob9/record{i}.txt" for i in range(3)]
    path = with_overlapping_entries(good, tmp_path / "overlap.siard", names, 50_000)
    report = validate_siard(path)
    (problem,) = only(report, "zip")
    assert problem.entry is None and "share bytes" in problem.message
    assert problem.message.startswith("overlap.siard: ")
    assert names[1] in problem.message and names[0] in problem.message
    # Nothing read: not even metadata.xml.
    assert report.archive is None and report.rows == 0


def test_lob_file_no_cell_refers_to(good: Path, tmp_path: Path) -> None:
    stray = "content/schema0/table0/lob9/record0.txt"
    path = rewrite(good, tmp_path / "stray-lob.siard", add={stray: b"x" * 100})
    (problem,) = only(validate_siard(path), "structure")
    assert (problem.entry, problem.table) == (stray, "main.customers")
    assert "no cell" in problem.message and "P_4.3-1" in problem.message


# -- structure ------------------------------------------------------------------------------


def test_missing_table_xsd(good: Path, tmp_path: Path) -> None:
    path = rewrite(good, tmp_path / "no-xsd.siard", drop={XSD0})
    (problem,) = only(validate_siard(path), "structure")
    assert (problem.entry, problem.table) == (XSD0, "main.customers")
    # Where is said once, by entry and table, not again in the message.
    assert problem.message == "is missing (P_4.2-3)"


def test_missing_version_folder_and_stray_root_entry(good: Path, tmp_path: Path) -> None:
    path = rewrite(
        good,
        tmp_path / "stray.siard",
        drop={"header/siardversion/2.2/"},
        add={"readme.txt": b"hello"},
    )
    problems = only(validate_siard(path), "structure")
    assert sorted(p.message.split("(P_")[-1] for p in problems) == ["4.2-1)", "4.2-4)"]


def test_content_folder_not_in_metadata(good: Path, tmp_path: Path) -> None:
    path = rewrite(good, tmp_path / "extra.siard", add={"content/schema0/table9/x.xml": b"<x/>"})
    (problem,) = only(validate_siard(path), "structure")
    assert problem.entry == "content/schema0/table9/" and "P_4.3-1" in problem.message


# -- XML entities -----------------------------------------------------------------------------


@pytest.fixture
def marker(tmp_path: Path) -> tuple[Path, str]:
    """A file an external entity points at; its content must never show up."""
    secret = f"MARKER-{uuid.uuid4().hex}"
    path = tmp_path / "secret.txt"
    path.write_text(secret)
    return path, secret


def test_external_entity_in_metadata(good: Path, tmp_path: Path, marker: tuple[Path, str]) -> None:
    secret_path, secret = marker
    doctype = f'<!DOCTYPE siardArchive [<!ENTITY leak SYSTEM "file://{secret_path}">]>'
    path = rewrite(
        good,
        tmp_path / "entity.siard",
        change={
            "header/metadata.xml": lambda data: sub(rb"\?>", b"?>" + doctype.encode())(
                sub(rb"<dbname>[^<]*</dbname>", b"<dbname>&leak;</dbname>")(data)
            )
        },
    )
    report = validate_siard(path)
    (problem,) = only(report, "xml-entities")
    assert problem.entry == "header/metadata.xml"
    assert secret not in repr(report)


def test_external_dtd_with_an_entity_in_metadata(good: Path, tmp_path: Path) -> None:
    # Not well-formed without the DTD (the entity is declared there only): still a DOCTYPE.
    doctype = b'<!DOCTYPE siardArchive SYSTEM "http://127.0.0.1:9/siard.dtd">'
    path = rewrite(
        good,
        tmp_path / "dtd.siard",
        change={
            "header/metadata.xml": lambda data: sub(rb"\?>", b"?>" + doctype)(
                sub(rb"<dbname>[^<]*</dbname>", b"<dbname>&x;</dbname>")(data)
            )
        },
    )
    (problem,) = only(validate_siard(path), "xml-entities")
    assert problem.entry == "header/metadata.xml"


def test_external_entity_in_a_table(good: Path, tmp_path: Path, marker: tuple[Path, str]) -> None:
    secret_path, secret = marker
    doctype = f'<!DOCTYPE table [<!ENTITY leak SYSTEM "file://{secret_path}">]>'
    path = rewrite(
        good,
        tmp_path / "entity.siard",
        change={
            TABLE0: lambda data: sub(rb"\?>", b"?>" + doctype.encode())(
                sub(rb"<c2>customer 1</c2>", b"<c2>&leak;</c2>")(data)
            )
        },
    )
    report = validate_siard(path)
    (problem,) = only(report, "xml-entities")
    assert (problem.entry, problem.table) == (TABLE0, "main.customers")
    assert secret not in repr(report)


def test_table_xsd_that_includes_another_is_not_followed(
    good: Path, tmp_path: Path, marker: tuple[Path, str]
) -> None:
    secret_path, _ = marker
    include = f'<xs:include schemaLocation="file://{secret_path}"/>'.encode()
    path = rewrite(
        good,
        tmp_path / "include.siard",
        change={XSD0: sub(rb"(<xs:schema[^>]*>)", rb"\1" + include)},
    )
    (problem,) = only(validate_siard(path), "table-xsd")
    assert problem.table == "main.customers" and "not fetched" in problem.message


# -- tables against their XSD and the metadata ---------------------------------------------------


def test_value_not_matching_the_table_xsd(good: Path, tmp_path: Path) -> None:
    path = rewrite(
        good, tmp_path / "abc.siard", change={TABLE1: sub(rb"<c1>7</c1>", b"<c1>abc</c1>")}
    )
    (problem,) = only(validate_siard(path), "table-xsd")
    assert (problem.entry, problem.table) == (TABLE1, "main.orders")
    assert "'abc'" in problem.message and "(id)" in problem.message
    assert "T_6.0-2" in problem.message


def test_many_bad_values_are_summed_up(good: Path, tmp_path: Path) -> None:
    """Five in full, then how many more; past a few hundred, schema errors stop being kept."""
    path = rewrite(
        good,
        tmp_path / "many.siard",
        change={TABLE1: sub(rb"<c1>(\d+)</c1>", rb"<c1>x\1</c1>", count=0)},
    )
    report = validate_siard(path)
    problems = only(report, "table-xsd")
    assert len(problems) == 7
    assert "'x1'" in problems[0].message and "'x5'" in problems[4].message
    assert "not checked beyond row 1,024" in problems[5].message
    assert re.search(r"\d+ more table-xsd problems", problems[6].message)
    assert report.rows == CUSTOMERS + ORDERS  # counted to the end all the same


def test_table_not_well_formed(good: Path, tmp_path: Path) -> None:
    path = rewrite(good, tmp_path / "broken.siard", change={TABLE1: sub(rb"</row>", b"</rov>")})
    (problem,) = only(validate_siard(path), "table-xsd")
    assert "not well-formed" in problem.message and problem.table == "main.orders"


def test_xsd_nullability_differs_from_metadata(good: Path, tmp_path: Path) -> None:
    # c2 (name) is NOT NULL: an XSD letting it be omitted contradicts metadata.xml.
    path = rewrite(
        good,
        tmp_path / "nullable.siard",
        change={XSD0: sub(rb'(name="c2" type="xs:string")', rb'\1 minOccurs="0"')},
    )
    (problem,) = only(validate_siard(path), "table-xsd-metadata")
    assert problem.entry == XSD0 and "P_4.3-7" in problem.message and "name" in problem.message


def test_row_count_lie(good: Path, tmp_path: Path) -> None:
    path = rewrite(
        good,
        tmp_path / "lie.siard",
        change={
            "header/metadata.xml": sub(f"<rows>{ORDERS}</rows>".encode(), b"<rows>1000</rows>")
        },
    )
    (problem,) = only(validate_siard(path), "row-count")
    assert (problem.entry, problem.table) == (TABLE1, "main.orders")
    assert problem.message == (
        f"metadata.xml says 1,000 rows, the table's XML holds {ORDERS:,} (P_4.3-10)"
    )


def test_table_of_another_siard_version_is_one_clear_finding(good: Path, tmp_path: Path) -> None:
    ns20 = b"http://www.admin.ch/xmlns/siard/2.0/schema0/table1.xsd"
    path = rewrite(
        good,
        tmp_path / "v20-table.siard",
        change={TABLE1: sub(rb"http://www.bar.admin.ch/xmlns/siard/2/table.xsd", ns20, count=0)},
    )
    (problem,) = only(validate_siard(path), "structure")
    assert (problem.entry, problem.table) == (TABLE1, "main.orders")
    assert ns20.decode() in problem.message and "only SIARD 2.1 and 2.2" in problem.message


def test_metadata_not_matching_its_xsd(good: Path, tmp_path: Path) -> None:
    path = rewrite(
        good,
        tmp_path / "meta.siard",
        change={"header/metadata.xml": sub(rb"<dataOwner>", b"<dataOwnr>x</dataOwnr><dataOwner>")},
    )
    problems = only(validate_siard(path), "metadata-xsd")
    assert all("M_5.0-1" in p.message for p in problems)


# -- LOBs ----------------------------------------------------------------------------------------


def test_missing_lob_file(good: Path, tmp_path: Path) -> None:
    (photo,) = [n for n in lob_entries(good) if n.endswith(".bin")]
    path = rewrite(good, tmp_path / "no-lob.siard", drop={photo})
    (problem,) = only(validate_siard(path), "lob")
    assert (problem.entry, problem.table) == (photo, "main.customers")
    assert "not in the archive" in problem.message


def test_wrong_lob_digest(good: Path, tmp_path: Path) -> None:
    (photo,) = [n for n in lob_entries(good) if n.endswith(".bin")]
    path = rewrite(
        good, tmp_path / "digest.siard", change={photo: lambda data: bytes(reversed(data))}
    )
    (problem,) = only(validate_siard(path), "lob")
    assert (problem.entry, problem.table) == (photo, "main.customers")
    assert "SHA-256" in problem.message


def test_wrong_lob_length(good: Path, tmp_path: Path) -> None:
    (note,) = [n for n in lob_entries(good) if n.endswith(".txt")]
    path = rewrite(
        good,
        tmp_path / "length.siard",
        change={TABLE0: sub(rf'length="{len(BIG_NOTE)}"'.encode(), b'length="12"')},
    )
    (problem,) = only(validate_siard(path), "lob")
    assert problem.entry == note and f"{len(BIG_NOTE):,} characters" in problem.message


# -- the sample database of every common type -----------------------------------------------------


@pytest.fixture(scope="module")
def pg_source(pg_database: Callable[[], str]) -> str:
    return pg_database()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_sample_database_exports_valid(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    from preservation.siard.export import export_database
    from tests.siard_samples import create_sample_database

    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'sample.sqlite'}"
    else:
        url = request.getfixturevalue("pg_source")
    create_sample_database(url)
    archive = export_database(url, tmp_path / "sample.siard")
    report = validate_siard(tmp_path / "sample.siard")
    assert report.problems == []
    assert report.tables == len(archive.tables())
    assert report.rows == sum(t.rows for _, t in archive.tables())
    assert report.lob_count > 0
