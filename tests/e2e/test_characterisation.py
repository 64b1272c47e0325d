"""Characterisation and format validation on a real ingest, with the real tools.

A bag of real files (images, PDFs, audio, an FFV1 film, XML, text) with four
malformed ones goes through the embedded pipeline. A malformed file is a
finding, not a refusal: by default the bag commits, and the finding is kept
everywhere a curator or a later auditor looks for it (the ingest result, the
catalogue, the lookup and search, the chained events, the AIP's METS on tape
and ``preservation show``). The tenant rule ``invalid_formats: reject`` turns
the same finding into a rejection at ``characterise``, before anything reaches
tape. Each tool runs once per batch, never once per file: a SIP of 50,000 files
must not start 50,000 processes, so the spawns of a 20- and a 60-file ingest
are counted and compared.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
import subprocess
import wave
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bagit  # type: ignore[import-untyped]
import pytest
from lxml import etree
from sqlalchemy import func, select
from typer.testing import CliRunner

from preservation import ingest
from preservation.catalog import AIPVersion, File, SIPState, TapeCopy, service, session_scope
from preservation.catalog.search import SearchQuery
from preservation.cli import app
from preservation.config import Settings
from preservation.context import Context, open_context
from preservation.lookup import aip_summary, search, version_detail
from preservation.metadata import validate_mets
from preservation.metadata.mets import CHARACTERISATION_NS
from preservation.metadata.reader import read_mets
from preservation.storage import recovery
from tests.conftest import require_program
from tests.trees import tree_digest

#: The malformed files of the bag and the validator that must catch each.
MALFORMED = {
    "data/images/truncated.png": "pillow",
    "data/documents/broken.pdf": "qpdf",
    "data/audio/corrupt.flac": "ffmpeg",
    "data/documents/broken.xml": "xml",
}
#: Checked by no validator (plain text has none in the registry): valid is None, not True.
UNCHECKED = {"data/documents/notes.txt"}
CHARACTERISATION = "data/metadata/preservation/characterisation"


def _require(*programs: str) -> None:
    """Every external tool the registry calls for; missing, skip locally and FAIL under CI."""
    for program in programs:
        require_program(program)


def _ffmpeg(target: Path, *args: str) -> None:
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", *args, str(target)], check=True, timeout=60
    )


def _damaged(data: bytes, at: float, count: int, mask: int = 0x5A) -> bytes:
    """``count`` bytes XORed from fraction ``at`` of the data: damage inside the file."""
    out = bytearray(data)
    start = int(len(out) * at)
    for index in range(start, start + count):
        out[index] ^= mask
    return bytes(out)


def _pdf(path: Path) -> bytes:
    """A one-page PDF with an uncompressed xref and one Flate content stream."""
    import pikepdf

    pdf = pikepdf.new()
    pdf.add_blank_page(page_size=(200, 200))
    text = b"".join(b"BT /F1 12 Tf 20 %d Td (line %d) Tj ET\n" % (i, i) for i in range(200))
    stream = pdf.make_stream(zlib.compress(text))
    stream.Filter = pikepdf.Name.FlateDecode
    pdf.pages[0].Contents = stream
    pdf.save(path, compress_streams=False, object_stream_mode=pikepdf.ObjectStreamMode.disable)
    return path.read_bytes()


def _broken_pdf(good: bytes) -> bytes:
    """The xref moved off its place and the page's content stream damaged."""
    at = good.rindex(b"startxref")
    offset = int(good[at:].split()[1])
    broken = bytearray(good[:at] + b"startxref\n%d\n%%%%EOF\n" % (offset + 7))
    content = broken.index(b"stream\n") + len(b"stream\n")
    for index in range(content + 200, content + 216):
        broken[index] ^= 0xFF
    return bytes(broken)


def _make_bag(folder: Path) -> Path:
    """Turn ``folder`` (the payload) into a bag in place, sha256 manifests."""
    bagit.make_bag(str(folder), {"Source-Organization": "City Museum"}, checksums=["sha256"])
    return folder


def _write_mixed_payload(root: Path) -> None:
    from PIL import Image, features

    images, documents, audio, video = (root / n for n in ("images", "documents", "audio", "video"))
    for folder in (images, documents, audio, video):
        folder.mkdir(parents=True)
    picture = Image.new("RGB", (40, 30), (10, 200, 30))
    picture.paste((200, 10, 30), (0, 0, 20, 15))
    picture.save(images / "scan.png")
    picture.save(images / "scan.tif")
    picture.save(images / "photo.jpg", quality=90)
    if features.check("jpg_2000"):
        picture.save(images / "picture.jp2")
    png = (images / "scan.png").read_bytes()
    (images / "truncated.png").write_bytes(png[: len(png) // 2])

    good_pdf = _pdf(documents / "report.pdf")
    (documents / "broken.pdf").write_bytes(_broken_pdf(good_pdf))
    declaration = '<?xml version="1.0" encoding="UTF-8"?>\n'
    (documents / "record.xml").write_text(declaration + "<record><title>Letters</title></record>\n")
    (documents / "broken.xml").write_text(declaration + "<record><title>Letters</titel></record>\n")
    (documents / "notes.txt").write_text("plain words, no validator for them\n")

    tone = ["-f", "lavfi", "-i", "sine=frequency=440:duration=1"]
    _ffmpeg(audio / "tone.wav", *tone, "-ar", "48000", "-ac", "2", "-c:a", "pcm_s24le")
    two_seconds = ["-f", "lavfi", "-i", "sine=frequency=440:duration=2"]
    _ffmpeg(audio / "tone.flac", *two_seconds, "-c:a", "flac")
    (audio / "corrupt.flac").write_bytes(_damaged((audio / "tone.flac").read_bytes(), 0.5, 64))
    pattern = ["-f", "lavfi", "-i", "testsrc=size=64x48:rate=25:duration=1"]
    _ffmpeg(video / "clip.mkv", *pattern, *tone, "-c:v", "ffv1", "-level", "3", "-c:a", "flac")


@pytest.fixture(scope="module")
def mixed_bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The submitter's bag: every kind of file the registry knows, four of them malformed."""
    _require("ffmpeg", "exiftool", "mediainfo", "mediaconch")
    folder = tmp_path_factory.mktemp("submitted") / "mixed-formats"
    _write_mixed_payload(folder)
    return _make_bag(folder)


@pytest.fixture(scope="module")
def ingested(
    mixed_bag: Path, tmp_path_factory: pytest.TempPathFactory, virus_scanner: str | None
) -> Iterator[tuple[Context, ingest.IngestResult]]:
    """One ingest of the mixed bag (tenant museum, no rules: warn), shared by the readers."""
    settings = Settings(home=tmp_path_factory.mktemp("archive") / "var", quiescent_seconds=0.2)
    settings.ensure_dirs()
    ctx = open_context(settings)
    try:
        yield ctx, ingest.run_ingest(ctx, mixed_bag, tenant="museum")
    finally:
        ctx.close()


def _files(ctx: Context, sip_id: str) -> dict[str, File]:
    with session_scope(ctx.sessions) as s:
        rows = {f.original_name: f for f in service.list_files(s, sip_id=sip_id)}
        s.expunge_all()
        return rows


def _events(ctx: Context, sip_id: str, kind: str) -> list[Any]:
    with session_scope(ctx.sessions) as s:
        found = [e for e in service.list_events(s, sip_id=sip_id) if e.type == kind]
        s.expunge_all()
        return found


def _pdf_version(path: Path) -> str:
    return path.read_bytes()[5:8].decode()  # "%PDF-1.3"


# -- warn (the default) ------------------------------------------------------------------------


def test_malformed_files_are_ingested_with_a_warning_naming_file_and_tool(
    ingested: tuple[Context, ingest.IngestResult], mixed_bag: Path
) -> None:
    """The bag commits; each malformed file is a warning naming the validator and its version."""
    ctx, result = ingested
    assert result.state == SIPState.COMMITTED.value, result.problems
    found = [w for w in result.warnings if w["rule"] == "invalid-format"]
    assert {w["file"]: w["tool"] for w in found} == MALFORMED
    for warning in found:
        assert warning["severity"] == "warning"
        assert warning["message"].startswith(f"{warning['tool']} "), warning  # tool + version
        assert len(warning["message"]) > len(warning["tool"]) + 10
    flac = next(w for w in found if w["file"] == "data/audio/corrupt.flac")
    assert "[flac]" in flac["message"]
    xml = next(w for w in found if w["file"] == "data/documents/broken.xml")
    assert "line 2" in xml["message"] and "titel" in xml["message"]

    files = _files(ctx, result.sip_id)
    for name, row in files.items():
        expected = False if name in MALFORMED else None if name in UNCHECKED else True
        assert row.valid is expected, (name, row.validation)
        if name in MALFORMED:
            [verdict] = [v for v in row.validation or [] if v["valid"] is False]
            assert verdict["tool"] == MALFORMED[name] and verdict["version"] and verdict["message"]
    assert files["data/video/clip.mkv"].validation is not None
    assert {v["tool"] for v in files["data/video/clip.mkv"].validation} == {"ffmpeg", "mediaconch"}

    props = {name: row.properties or {} for name, row in files.items()}
    assert props["data/images/scan.png"]["width"] == 40
    assert props["data/images/scan.png"]["height"] == 30
    assert props["data/images/scan.tif"]["width"] == 40
    assert props["data/images/photo.jpg"]["compression"] == "JPEG"
    assert {
        k: props["data/audio/tone.wav"][k] for k in ("sample_rate", "channels", "bit_depth")
    } == {
        "sample_rate": 48000,
        "channels": 2,
        "bit_depth": 24,
    }
    assert math.isclose(props["data/audio/tone.wav"]["duration"], 1.0, abs_tol=0.01)
    assert math.isclose(props["data/audio/tone.flac"]["duration"], 2.0, abs_tol=0.01)
    assert props["data/documents/report.pdf"]["page_count"] == 1
    assert props["data/documents/report.pdf"]["pdf_version"] == _pdf_version(
        mixed_bag / "data" / "documents" / "report.pdf"
    )
    film = props["data/video/clip.mkv"]
    assert (film["video_codec"], film["width"], film["height"]) == ("FFV1", 64, 48)
    assert film["frame_rate"] == 25.0 and film["audio_codec"] == "FLAC"
    if "data/images/picture.jp2" in files:
        assert files["data/images/picture.jp2"].valid is True  # jpylyzer
        assert props["data/images/picture.jp2"]["compression"] == "JPEG 2000"
    assert not props["data/documents/notes.txt"]  # text: nothing to measure
    assert props["data/documents/record.xml"] == {}

    aip_id = result.aip_id or ""
    with session_scope(ctx.sessions) as s:
        detail = version_detail(s, aip_id, 1, "museum")
        shown = {f.path: f for f in detail.files}
        assert set(shown) == set(files)
        for name, row in files.items():
            assert (shown[name].properties, shown[name].valid, shown[name].validation) == (
                row.properties,
                row.valid,
                row.validation,
            ), name
        assert aip_summary(s, aip_id, "museum").invalid_files == len(MALFORMED)
        with_invalid = search(s, SearchQuery(tenant_id="museum", invalid=True)).items
        assert [a.aip_id for a in with_invalid] == [aip_id]
        assert search(s, SearchQuery(tenant_id="museum", invalid=False)).items == []
        assert search(s, SearchQuery(tenant_id="library", invalid=True)).items == []


def test_each_tool_and_validator_has_one_chained_event_vouching_for_its_results(
    ingested: tuple[Context, ingest.IngestResult],
) -> None:
    """One ``metadata extraction`` event per tool, one ``validation`` event per validator.

    The validation event carries the sha256 of the per-file verdicts, so the
    tenant's hash chain vouches for the verdicts the METS spells out file by
    file: recomputed here from the catalogue, it must match.
    """
    ctx, result = ingested
    extraction = _events(ctx, result.sip_id, "metadata extraction")
    tools = {e.agents["executing program"][0].split(" ", 1)[0]: e for e in extraction}
    assert sorted(tools) == ["exiftool", "ffprobe", "mediainfo"]
    assert len(extraction) == 3  # once each, not once per file or batch
    for tool, ev in tools.items():
        assert ev.outcome == "success", ev.outcome_detail
        assert ev.objects["documents"] == [
            f"metadata/preservation/characterisation/{tool}-001.json"
        ]
        assert ev.detail.startswith(f"characterised with {tool} ")

    validations = [
        e for e in _events(ctx, result.sip_id, "validation") if "results_sha256" in e.objects
    ]
    by_tool = {e.agents["executing program"][0].split(" ", 1)[0]: e for e in validations}
    expected_tools = {"pillow", "qpdf", "ffmpeg", "xml", "mediaconch"}
    files = _files(ctx, result.sip_id)
    if "data/images/picture.jp2" in files:
        expected_tools.add("jpylyzer")
    assert set(by_tool) == expected_tools and len(validations) == len(expected_tools)
    with session_scope(ctx.sessions) as s:
        ordered = [f.original_name for f in service.list_files(s, sip_id=result.sip_id)]
    for tool, ev in by_tool.items():
        verdicts = [
            [name, v["valid"], v["message"]]
            for name in ordered
            for v in files[name].validation or []
            if v["tool"] == tool
        ]
        text = json.dumps(verdicts, ensure_ascii=False, separators=(",", ":"))
        assert ev.objects["results_sha256"] == hashlib.sha256(text.encode()).hexdigest(), tool
        assert ev.objects["files"] == len(verdicts)
        bad = [name for name, tool_name in MALFORMED.items() if tool_name == tool]
        assert ev.objects["invalid"] == len(bad)
        assert ev.outcome == ("warning" if bad else "success")
        if bad:
            assert [p["file"] for p in json.loads(ev.outcome_detail)] == bad
    with session_scope(ctx.sessions) as s:
        assert service.verify_event_chain(s, "museum") == []


def test_the_aip_on_tape_holds_the_tools_output_and_the_findings_in_its_mets(
    ingested: tuple[Context, ingest.IngestResult], tmp_path: Path
) -> None:
    """What a reader of the tape alone finds, decades on, without the catalogue.

    The tools' outputs as compact JSON (no staging path of this machine in
    them), pointed to from the root METS with their digests; the properties in
    PREMIS objectCharacteristicsExtension; one PREMIS validation event per file
    and validator. The METS validates against the schemas the AIP carries, and
    reads back to the properties that were written.
    """
    ctx, result = ingested
    bag = recovery.recover(ctx, result.aip_id or "", dest_dir=tmp_path / "recovered")
    folder = bag / CHARACTERISATION
    documents = sorted(p.name for p in folder.iterdir())
    assert documents == ["exiftool-001.json", "ffprobe-001.json", "mediainfo-001.json"]
    files = _files(ctx, result.sip_id)
    for name in documents:
        text = (folder / name).read_text("utf-8")
        document = json.loads(text)
        assert text == json.dumps(document, ensure_ascii=False, separators=(",", ":")), name
        assert document["tool"] == name.rsplit("-", 1)[0] and document["version"]
        assert document["output"]
        for where in (ctx.settings.staging_dir, ctx.settings.home_dir):
            assert str(where) not in text, (name, where)
        for listed in document["files"]:  # as the AIP names them, under representations/
            assert listed.startswith("rep1/data/") and listed.removeprefix("rep1/") in files

    root = read_mets(bag / "data" / "METS.xml")
    refs = {r.path: r for r in root.preservation}
    for name in documents:
        ref = refs[f"metadata/preservation/characterisation/{name}"]
        data = (folder / name).read_bytes()
        assert (ref.sha256, ref.size) == (hashlib.sha256(data).hexdigest(), len(data))
        assert ref.mdtype == f"{name.rsplit('-', 1)[0]} JSON output"
        assert ref.mime == "application/json"

    schemas = bag / "data" / "schemas"
    assert (schemas / "mets-premis.xsd").is_file()
    rep_mets = bag / "data" / "representations" / "rep1" / "METS.xml"
    for mets in (bag / "data" / "METS.xml", rep_mets):
        assert validate_mets(mets) == [], mets
        assert validate_mets(mets, schemas) == [], mets  # with the AIP's own copies

    rep = read_mets(rep_mets)
    objects = {f.original_name: f for f in rep.files}
    assert set(objects) == set(files)
    for name, row in files.items():
        assert objects[name].properties == (row.properties or {}), name
    tree = etree.parse(str(rep_mets))
    ns = {"premis": "http://www.loc.gov/premis/v3", "c": CHARACTERISATION_NS}
    widths = [
        str(w)
        for w in tree.xpath(
            "//premis:objectCharacteristicsExtension/c:significantProperties/c:width/text()",
            namespaces=ns,
        )  # type: ignore[union-attr]
    ]
    assert "40" in widths and "64" in widths

    by_id = {f.id: f.original_name for f in rep.files}
    validation_events = [e for e in rep.events if e.type == "validation"]
    seen: Counter[str] = Counter()
    for ev in validation_events:
        [link] = ev.objects
        name = by_id[link.object_id]
        seen[name] += 1
        [verdict] = [
            v
            for v in files[name].validation or []
            if ev.detail == f"format validation with {v['tool']} {v['version']}"
        ]
        if name in MALFORMED and verdict["tool"] == MALFORMED[name]:
            assert ev.outcome == "failure" and ev.outcome_detail == verdict["message"], name
        else:
            assert ev.outcome == "success", (name, ev.outcome_detail)
    assert seen == Counter({n: len(r.validation) for n, r in files.items() if r.validation})
    assert all(seen[name] for name in MALFORMED)


# -- reject ------------------------------------------------------------------------------------


def test_rule_reject_sets_the_bag_aside_at_characterise_and_nothing_reaches_tape(
    settings: Settings, mixed_bag: Path
) -> None:
    """``invalid_formats: reject``: the tenant wants no malformed file in its archive at all."""
    (settings.home_dir / "archiving-rules.json").write_text(
        json.dumps({"tenants": {"museum": {"invalid_formats": "reject"}}})
    )
    before = tree_digest(mixed_bag)
    ctx = open_context(settings)
    try:
        result = ingest.run_ingest(ctx, mixed_bag, tenant="museum")
        assert result.state == SIPState.REJECTED.value
        assert {p["file"]: p["tool"] for p in result.problems} == MALFORMED
        assert all(
            p["rule"] == "invalid-format" and p["severity"] == "error" for p in result.problems
        )
        report = json.loads((Path(result.rejected_to or "") / "report.json").read_text())
        assert report["stage"] == "characterise"
        assert {p["file"]: p["tool"] for p in report["problems"]} == MALFORMED
        for p in report["problems"]:
            assert p["message"].startswith(f"{p['tool']} ") and len(p["message"]) > 20
        text = (Path(result.rejected_to or "") / "report.txt").read_text()
        assert all(name in text for name in MALFORMED)
        with session_scope(ctx.sessions) as s:
            assert s.scalar(select(func.count()).select_from(AIPVersion)) == 0
            assert s.scalar(select(func.count()).select_from(TapeCopy)) == 0
            assert service.get_sip(s, result.sip_id).aip_id is None
            assert service.verify_event_chain(s, "museum") == []
        failed = [e for e in _events(ctx, result.sip_id, "validation") if e.outcome == "failure"]
        assert failed and any("invalid_formats: reject" in e.detail for e in failed)
        assert not (settings.staging_dir / result.sip_id).exists()
        assert tree_digest(mixed_bag) == before  # a bag given by path is never touched
    finally:
        ctx.close()


# -- the CLI -----------------------------------------------------------------------------------


def test_show_lists_each_files_verdict_and_names_the_malformed_ones(
    ingested: tuple[Context, ingest.IngestResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``preservation show``: what a curator reads at a terminal, and what a script parses."""
    ctx, result = ingested
    monkeypatch.setenv("PRESERVATION_HOME", str(ctx.settings.home_dir))
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.delenv("PRESERVATION_BROKER_URL", raising=False)
    shown = CliRunner().invoke(app, ["show", result.aip_id or "", "--json"])
    assert shown.exit_code == 0, shown.output
    body = json.loads(shown.stdout)
    files = {f["original_name"]: f for f in body["files"]}
    for name, tool in MALFORMED.items():
        assert files[name]["valid"] is False
        [verdict] = [v for v in files[name]["validation"] if v["valid"] is False]
        assert verdict["tool"] == tool and verdict["message"]
    assert files["data/images/scan.png"]["valid"] is True
    assert files["data/images/scan.png"]["properties"]["width"] == 40
    assert files["data/documents/notes.txt"]["valid"] is None

    text = CliRunner().invoke(app, ["show", result.aip_id or ""])
    assert text.exit_code == 0, text.output
    assert "format validation: malformed files" in text.stdout
    malformed = text.stdout.split("format validation: malformed files", 1)[1]
    for name, tool in MALFORMED.items():
        assert name in malformed and tool in malformed, name
    assert "data/images/scan.png" not in malformed


# -- one process per batch ---------------------------------------------------------------------


def _tone(path: Path, frequency: int) -> None:
    """A tenth of a second of a sine tone, 16-bit mono 8 kHz: a real WAV, no process."""
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        samples = (int(12000 * math.sin(2 * math.pi * frequency * n / 8000)) for n in range(800))
        out.writeframes(b"".join(struct.pack("<h", s) for s in samples))


def _many_files_bag(root: Path, n: int) -> Path:
    from PIL import Image

    folder = root / f"bag-{n}"
    (folder / "audio").mkdir(parents=True)
    (folder / "images").mkdir()
    for i in range(n):
        _tone(folder / "audio" / f"tone-{i:03d}.wav", 200 + 10 * i)
        Image.new("RGB", (8 + i, 6), (i, 100, 200)).save(folder / "images" / f"tile-{i:03d}.png")
    return _make_bag(folder)


def _spawns_while_ingesting(
    bag: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[ingest.IngestResult, Counter[str]]:
    """The programs started through ``subprocess.Popen`` during one ingest, by name."""
    settings = Settings(home=home, quiescent_seconds=0.2)
    settings.ensure_dirs()
    ctx = open_context(settings)  # cold: no tool process kept from an earlier ingest
    started: Counter[str] = Counter()
    real = subprocess.Popen

    class Counting(real):  # type: ignore[misc,valid-type]
        def __init__(self, args: Any, *rest: Any, **kw: Any) -> None:
            argv = [args] if isinstance(args, str | bytes | os.PathLike) else list(args)
            started[os.path.basename(os.fsdecode(argv[0]))] += 1
            super().__init__(args, *rest, **kw)

    try:
        with monkeypatch.context() as patch:
            patch.setattr(subprocess, "Popen", Counting)
            result = ingest.run_ingest(ctx, bag, tenant="museum")
    finally:
        ctx.close()
    return result, started


def test_tools_start_once_per_batch_whatever_the_number_of_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, virus_scanner: str | None
) -> None:
    """Three times the files, the same processes: the tools run per batch, not per file."""
    _require("exiftool", "mediainfo")
    runs = {}
    for n in (10, 30):
        bag = _many_files_bag(tmp_path / "bags", n)
        result, started = _spawns_while_ingesting(bag, tmp_path / f"var-{n}", monkeypatch)
        assert result.state == SIPState.COMMITTED.value, result.problems
        ctx = open_context(Settings(home=tmp_path / f"var-{n}"))
        try:
            files = _files(ctx, result.sip_id)
        finally:
            ctx.close()
        assert len(files) == 2 * n
        assert all(f.valid is True and f.properties for f in files.values())
        runs[n] = started
    assert runs[10]["mediainfo"] >= 1 and runs[10]["exiftool"] == 1  # the counting works
    assert runs[30] == runs[10], runs
    assert sum(runs[30].values()) <= 6, runs
