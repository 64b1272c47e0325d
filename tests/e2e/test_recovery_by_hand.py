"""docs/recovery.md, performed: an AIP back from an emulated cartridge with none of our code.

The archive is made by the ``preservation`` command in child processes: the
sample bag ingested, then its descriptive metadata replaced, so the AIP has
two versions, a forward delta on tape. Everything after that uses only what a
reader in 2076 would have, step by step as the page says: the cartridge's
files in the reference "file" backend layout, the LTFS index XML (lxml), the
system ``tar``, the stock ``bagit`` package and the XML schemas that travel
inside the package. This module imports nothing from ``preservation`` (the
last test keeps it that way), so a step the page forgets cannot be filled in
by the archive's own code without anyone noticing.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

import bagit
from lxml import etree

from tests.conftest import require_program

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "examples" / "bags" / "sample-collection"
TENANT = "museum"
NEW_TITLE = "Lettres du donateur, 1921"
ALGORITHMS = ("sha256", "sha512")
METS = "{http://www.loc.gov/METS/}"
HREF = "{http://www.w3.org/1999/xlink}href"
DC_TITLE = "{http://purl.org/dc/elements/1.1/}title"
PARTITION = {"a": 0, "b": 1}
_OBJECT = re.compile(r"^([0-9]+)_([0-9]+)_([RFE])$")
# Whatever a tape holds is data to check, not to obey: no entities, no network.
PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)


# -- making the archive: the command line, in child processes ---------------------------------


def preservation(home: Path, *args: str) -> dict[str, object]:
    """One ``preservation`` command on a private data root, as an operator runs it."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("PRESERVATION_")
        or key in ("PRESERVATION_CLAMD_SOCKET", "PRESERVATION_VIRUS_SCAN")
    }
    env["PRESERVATION_HOME"] = str(home)
    done = subprocess.run(
        [sys.executable, "-c", "from preservation.cli import main; main()", *args, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    result: dict[str, object] = json.loads(done.stdout)
    return result


# -- section 3: the cartridge, without LTFS software -------------------------------------------


def partition_objects(cartridge: Path, partition: int) -> list[str]:
    """The kinds ("R" record, "F" filemark) of a partition's objects up to its end of data."""
    kinds: dict[int, str] = {}
    eod: int | None = None
    for entry in cartridge.iterdir():
        match = _OBJECT.match(entry.name)
        if match is None or int(match[1]) != partition:
            continue
        if match[3] == "E":
            eod = int(match[2]) if eod is None else min(eod, int(match[2]))
        else:
            kinds[int(match[2])] = match[3]
    assert eod is not None, f"{cartridge}: partition {partition} has no end of data"
    return [kinds[number] for number in range(eod)]


def read_record(cartridge: Path, partition: int, number: int) -> bytes:
    record = cartridge / f"{partition}_{number}_R"
    assert record.is_file(), f"{cartridge.name}: object {partition}/{number} is not a record"
    return record.read_bytes()


def last_index(cartridge: Path, partition: int) -> etree._Element | None:
    """What ``mt eod; mt bsf 2; mt fsf 1; dd`` reads: the records between the last two filemarks.

    When those records are not an index (file data written after the last
    one), one filemark further back, and so on, as the page says.
    """
    kinds = partition_objects(cartridge, partition)
    marks = [number for number, kind in enumerate(kinds) if kind == "F"]
    for later in range(len(marks) - 1, 0, -1):
        first, end = marks[later - 1] + 1, marks[later]
        if first == end:
            continue
        data = b"".join(read_record(cartridge, partition, n) for n in range(first, end))
        if data.lstrip().startswith(b"<?xml") and b"<ltfsindex" in data[:4096]:
            return etree.fromstring(data, PARSER)
    return None


def newest_index(cartridge: Path) -> etree._Element:
    """The higher generation of the two partitions' last indexes; equal ones are one index."""
    found = [i for i in (last_index(cartridge, 0), last_index(cartridge, 1)) if i is not None]
    assert found, f"{cartridge.name}: no index on either partition"

    def generation(index: etree._Element) -> int:
        return int(index.findtext("generationnumber") or "0")

    newest = max(found, key=generation)
    same = [i for i in found if generation(i) == generation(newest)]
    # Both copies of one generation carry one update time (docs/tape-format.md).
    assert len({i.findtext("updatetime") for i in same}) == 1, cartridge.name
    return newest


def lookup(index: etree._Element, path: str) -> etree._Element | None:
    """A file or folder of the volume by path: the outermost <directory> is the volume."""
    node = index.find("directory")
    for name in path.strip("/").split("/"):
        contents = node.find("contents") if node is not None else None
        if contents is None:
            return None
        node = next((c for c in contents if c.findtext("name") == name), None)
    return node


def read_file(cartridge: Path, file: etree._Element, out: Path) -> str:
    """The file's bytes from its extents, checked against ``ltfs.hash.sha256sum``."""
    length = int(file.findtext("length") or "0")
    with open(out, "wb") as handle:
        for extent in file.iterfind("extentinfo/extent"):
            partition = PARTITION[extent.findtext("partition") or ""]
            number = int(extent.findtext("startblock") or "")
            skip = int(extent.findtext("byteoffset") or "0")
            remaining = int(extent.findtext("bytecount") or "0")
            handle.seek(int(extent.findtext("fileoffset") or "0"))
            while remaining > 0:
                piece = read_record(cartridge, partition, number)[skip : skip + remaining]
                assert piece, f"{out.name}: extent runs past its records"
                handle.write(piece)
                remaining -= len(piece)
                skip = 0
                number += 1
        handle.truncate(length)
    recorded = file.find("extendedattributes/xattr[key='ltfs.hash.sha256sum']")
    assert recorded is not None, f"{out.name}: no ltfs.hash.sha256sum"
    expected = (recorded.findtext("value") or "").strip().lower()
    actual = hashlib.sha256(out.read_bytes()).hexdigest()
    assert actual == expected, f"{out.name}: sha256 {actual}, the index says {expected}"
    return actual


def version_tars(tape: Path, site: str, aip: str) -> dict[int, tuple[Path, etree._Element]]:
    """Every v<N>.tar of the AIP on one site's cartridges: the cartridge and its index entry."""
    found: dict[int, tuple[Path, etree._Element]] = {}
    for cartridge in sorted((tape / site / "cartridges").iterdir()):
        if not any(_OBJECT.match(p.name) and p.name.endswith("_R") for p in cartridge.iterdir()):
            continue  # blank: never written
        folder = lookup(newest_index(cartridge), f"/{TENANT}/{aip}")
        if folder is None:
            continue
        for file in folder.iterfind("contents/file"):
            match = re.fullmatch(r"v([0-9]+)\.tar", file.findtext("name") or "")
            if match:
                assert int(match[1]) not in found, f"v{match[1]} twice at {site}"
                found[int(match[1])] = (cartridge, file)
    return found


# -- sections 4 and 5: unpack, check, combine ------------------------------------------------


def untar(tar: str, archive: Path, where: Path) -> None:
    subprocess.run([tar, "-xf", str(archive), "-C", str(where)], check=True, timeout=120)


def manifest_lines(bag: Path, algorithm: str) -> list[str]:
    return (bag / f"manifest-{algorithm}.txt").read_text(encoding="utf-8").splitlines()


def combine(work: Path, aip: str, number: int) -> Path:
    """Version ``number`` whole, from the unpacked tars side by side, by its root METS alone."""
    own = work / f"{aip}.v{number}"
    current = work / "current"
    shutil.copytree(own, current)
    carried: dict[int, list[str]] = {}
    root = etree.parse(str(own / "data" / "METS.xml"), PARSER)
    for group in root.iter(f"{METS}fileGrp"):
        use = group.get("USE", "")
        if not (use.startswith("Representations/") or use == "Previous versions"):
            continue
        for flocat in group.iter(f"{METS}FLocat"):
            href = unquote(flocat.get(HREF, ""))
            link = re.fullmatch(rf"\.\./\.\./{re.escape(aip)}\.v([0-9]+)/data/(.+)", href, re.S)
            if link is None:
                assert not href.startswith("../"), href
                continue  # held by this version itself
            earlier, path = int(link[1]), link[2]
            assert 1 <= earlier < number and ".." not in path.split("/"), href
            if use.startswith("Representations/"):
                assert path.endswith("/METS.xml"), href
                path = path.removesuffix("/METS.xml")  # the whole representation folder
            carried.setdefault(earlier, []).append(path)
    assert carried, "a version after the first names something of an earlier one"
    for earlier, paths in sorted(carried.items()):
        source_bag = work / f"{aip}.v{earlier}"
        for path in paths:
            source, target = source_bag / "data" / path, current / "data" / path
            assert source.exists() and not target.exists(), path
            target.parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir():
                shutil.copytree(source, target)
            else:
                shutil.copy2(source, target)
            prefix = f"data/{path}"
            for algorithm in ALGORITHMS:  # the tape's own digests for what was copied
                lines = [
                    line
                    for line in manifest_lines(source_bag, algorithm)
                    if (name := line.split("  ", 1)[1]) == prefix or name.startswith(prefix + "/")
                ]
                assert lines, f"v{earlier}'s manifest has no line for {prefix}"
                mine = manifest_lines(current, algorithm) + lines
                (current / f"manifest-{algorithm}.txt").write_text(
                    "".join(line + "\n" for line in mine), encoding="utf-8"
                )
    payload = [p for p in (current / "data").rglob("*") if p.is_file()]
    oxum = f"Payload-Oxum: {sum(p.stat().st_size for p in payload)}.{len(payload)}"
    info = current / "bag-info.txt"
    lines = info.read_text(encoding="utf-8").splitlines()
    info.write_text(
        "".join((oxum if line.startswith("Payload-Oxum:") else line) + "\n" for line in lines),
        encoding="utf-8",
    )
    tag_files = ["bagit.txt", "bag-info.txt", "manifest-sha256.txt", "manifest-sha512.txt"]
    for algorithm in ALGORITHMS:
        (current / f"tagmanifest-{algorithm}.txt").write_text(
            "".join(
                f"{hashlib.new(algorithm, (current / name).read_bytes()).hexdigest()}  {name}\n"
                for name in tag_files
            ),
            encoding="utf-8",
        )
    return current


def schema_errors(bag_data: Path, xsd: str, document: str) -> list[str]:
    """``xmllint --nonet --schema data/schemas/<xsd> <document>``, with lxml (libxml2 too)."""
    schema = etree.XMLSchema(etree.parse(str(bag_data / "schemas" / xsd), PARSER))
    if schema.validate(etree.parse(str(bag_data / document), PARSER)):
        return []
    return [str(schema.error_log)]


def dublin_core_errors(bag_data: Path, work: Path) -> str:
    """The DC record against oai_dc.xsd, its imports answered by an XML catalog (as the page shows).

    libxml2 reads ``XML_CATALOG_FILES`` once, when it starts, hence a child process.
    """
    schemas = bag_data / "schemas"
    catalog = work / "catalog.xml"
    catalog.write_text(
        '<catalog xmlns="urn:oasis:names:tc:entity:xmlns:xml:catalog">\n'
        '  <uri name="http://dublincore.org/schemas/xmls/simpledc20021212.xsd" '
        f'uri="{(schemas / "simpledc20021212.xsd").as_uri()}"/>\n'
        '  <uri name="http://www.w3.org/2001/03/xml.xsd" '
        f'uri="{(schemas / "xml.xsd").as_uri()}"/>\n'
        "</catalog>\n",
        encoding="utf-8",
    )
    code = (
        "import sys\nfrom lxml import etree\n"
        "p = etree.XMLParser(no_network=True)\n"
        "s = etree.XMLSchema(etree.parse(sys.argv[1], p))\n"
        "ok = s.validate(etree.parse(sys.argv[2], p))\n"
        "print('' if ok else s.error_log)\n"
    )
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            str(schemas / "oai_dc.xsd"),
            str(bag_data / "metadata" / "descriptive" / "dc.xml"),
        ],
        env={**os.environ, "XML_CATALOG_FILES": str(catalog)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return (done.stdout + done.stderr).strip()


def current_files(bag: Path, aip: str) -> dict[str, bytes]:
    """The newest representation's files, by the submitter's paths, checked against its METS."""
    root = etree.parse(str(bag / "data" / "METS.xml"), PARSER)
    groups = [
        g.get("USE", "")
        for g in root.iter(f"{METS}fileGrp")
        if g.get("USE", "").startswith("Representations/")
    ]
    rep = groups[-1].removeprefix("Representations/")
    rep_mets = etree.parse(str(bag / "data" / "representations" / rep / "METS.xml"), PARSER)
    files: dict[str, bytes] = {}
    for file in rep_mets.iter(f"{METS}file"):
        flocat = file.find(f"{METS}FLocat")
        assert flocat is not None
        href = unquote(flocat.get(HREF, ""))
        held = re.fullmatch(rf"\.\./\.\./\.\./\.\./{re.escape(aip)}\.v[0-9]+/data/(.+)", href, re.S)
        path = held[1] if held else f"representations/{rep}/{href}"
        parts = path.split("/", 3)
        assert parts[0] == "representations" and parts[2] == "data" and ".." not in parts, href
        content = (bag / "data" / path).read_bytes()
        assert file.get("CHECKSUMTYPE") == "SHA-256", file.get("ID")
        assert hashlib.sha256(content).hexdigest() == file.get("CHECKSUM"), path
        assert len(content) == int(file.get("SIZE", "-1")), path
        files[parts[3]] = content
    return files


# -- the test ---------------------------------------------------------------------------------


def test_an_aip_in_two_versions_comes_back_by_the_recovery_page_alone(tmp_path: Path) -> None:
    tar = require_program("tar")  # under CI a missing tar fails: this test must run
    home = tmp_path / "home"
    ingested = preservation(home, "ingest", str(SAMPLE), "--tenant", TENANT)
    assert ingested["state"] == "committed", ingested
    aip = str(ingested["aip_id"])
    updated = preservation(
        home, "aip", "metadata", aip, "--set", f"title={NEW_TITLE}", "--by", "jane@museum"
    )
    assert updated["number"] == 2, updated

    # From here on: the cartridges' files, the index XML, tar, bagit, the schemas in the bag.
    tape = home / "tape"
    sites = sorted(p.name for p in tape.iterdir() if (p / "cartridges").is_dir())
    assert len(sites) == 2, sites
    work = tmp_path / "recovered"
    work.mkdir()
    digests: dict[str, dict[int, str]] = {}
    for site in sites:
        tars = version_tars(tape, site, aip)
        assert sorted(tars) == [1, 2], (site, sorted(tars))
        digests[site] = {}
        for number, (cartridge, file) in tars.items():
            out = work / f"{site}-v{number}.tar"
            digests[site][number] = read_file(cartridge, file, out)
    assert digests[sites[0]] == digests[sites[1]]  # two sites, the same tars

    for number in (1, 2):
        untar(tar, work / f"{sites[0]}-v{number}.tar", work)
        single = work / f"{aip}.v{number}"
        assert single.is_dir(), f"v{number}.tar has no top folder {single.name}"
        bagit.Bag(str(single)).validate()  # each tar's bag, alone

    bag = combine(work, aip, 2)
    bagit.Bag(str(bag)).validate()  # version 2 whole: one valid bag
    info = (bag / "bag-info.txt").read_text(encoding="utf-8")
    assert f"AIP-Identifier: {aip}" in info and "AIP-Version: 2" in info

    data = bag / "data"
    assert schema_errors(data, "mets-premis.xsd", "METS.xml") == []
    assert schema_errors(data, "mets-premis.xsd", "representations/rep1/METS.xml") == []
    assert schema_errors(data, "premis-v3-0.xsd", "metadata/preservation/premis.xml") == []
    assert dublin_core_errors(data, work) == ""
    titles = etree.parse(str(data / "metadata" / "descriptive" / "dc.xml"), PARSER)
    assert [t.text for t in titles.iter(DC_TITLE)] == [NEW_TITLE]  # version 2's record, not v1's

    recovered = current_files(bag, aip)
    originals = {
        p.relative_to(SAMPLE / "data").as_posix(): p.read_bytes()
        for p in sorted((SAMPLE / "data").rglob("*"))
        if p.is_file()
    }
    assert sorted(recovered) == sorted(originals)
    for name, content in originals.items():
        assert recovered[name] == content, name
    submitted = data / "submission" / "bag-info.txt"
    assert submitted.read_bytes() == (SAMPLE / "bag-info.txt").read_bytes()


def test_this_module_imports_nothing_of_the_archive() -> None:
    tree = ast.parse(Path(__file__).read_text(encoding="utf-8"))
    imported = [
        name
        for node in ast.walk(tree)
        for name in (
            [alias.name for alias in node.names]
            if isinstance(node, ast.Import)
            else [node.module or ""]
            if isinstance(node, ast.ImportFrom)
            else []
        )
    ]
    assert imported and not [n for n in imported if n.split(".")[0] == "preservation"]
