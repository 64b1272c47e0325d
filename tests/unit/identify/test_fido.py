"""fido through ``FidoEngine``: the PUIDs fido really gives, loaded once, same as stock fido."""

from __future__ import annotations

import pickle
import re
import subprocess
import sys
from pathlib import Path

import fido as fido_pkg  # type: ignore[import-untyped]
import pytest

from bench.samples import KINDS
from preservation.identify import FidoEngine, Identification
from preservation.identify import fido as fido_module

# kind -> (PUID fido 1.6.1 with PRONOM v109 gives, basis). Observed, then pinned.
EXPECTED = {
    "png": ("fmt/11", "signature"),
    "tiff": ("fmt/353", "signature"),
    "jpeg": ("fmt/43", "signature"),
    "gif": ("fmt/3", "signature"),
    "bmp": ("fmt/116", "signature"),
    "webp": ("fmt/566", "signature"),
    "ico": ("x-fmt/418", "extension"),
    "pdf": ("fmt/18", "signature"),
    "wav": ("fmt/141", "signature"),
    "csv": ("x-fmt/18", "extension"),
    "txt": ("x-fmt/111", "extension"),
    "xml": ("fmt/101", "signature"),
    "html": ("fmt/471", "signature"),
    "json": ("fmt/1311", "extension"),
    "svg": ("fmt/92", "signature"),
    "rtf": ("fmt/45", "signature"),
    "docx": ("fmt/412", "container"),
    "xlsx": ("fmt/214", "container"),
    "xls": ("fmt/61", "container"),
    "pptx": ("fmt/215", "container"),
    "odt": ("fmt/290", "signature"),
    "ods": ("fmt/294", "signature"),
    "zip": ("x-fmt/263", "signature"),
    "gzip": ("x-fmt/266", "signature"),
    "tar": ("x-fmt/265", "signature"),
    "unknown": ("fmt/208", "extension"),
}


@pytest.fixture(scope="module")
def engine() -> FidoEngine:
    return FidoEngine()


def test_every_sample_kind_has_an_expectation() -> None:
    assert set(EXPECTED) == set(KINDS)
    assert len(KINDS) >= 20


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_sample_kind_gets_its_puid(engine: FidoEngine, samples: dict[str, Path], kind: str) -> None:
    puid, basis = EXPECTED[kind]
    [result] = engine.identify_batch([samples[kind]])
    assert result.puid == puid, result
    assert result.basis == basis
    assert result.known and result.error is None
    assert result.path == samples[kind]
    if basis == "extension":
        assert "extension only" in (result.warning or "")


@pytest.mark.parametrize("kind", ["docx", "xlsx", "pptx", "odt", "ods"])
def test_office_packages_are_not_reported_as_plain_zip(
    engine: FidoEngine, samples: dict[str, Path], kind: str
) -> None:
    [result] = engine.identify_batch([samples[kind]])
    assert "x-fmt/263" not in result.puids
    assert any(family in (result.mime or "") for family in ("openxmlformats", "opendocument"))


def test_an_excel_97_workbook_is_told_apart_from_a_bare_ole2_file(
    engine: FidoEngine, samples: dict[str, Path]
) -> None:
    [result] = engine.identify_batch([samples["xls"]])
    assert "fmt/111" not in result.puids  # "OLE2 Compound Document Format", the container
    assert result.puid == "fmt/61" and result.format_version == "8"
    assert result.mime == "application/vnd.ms-excel"
    # fido 1.6.1 compiles only the first subsequence of an OLE2 container signature, so
    # the Excel 97-2003 *template* signature (x-fmt/17) matches every BIFF8 workbook too;
    # the workbook signature comes first in the file and wins, the other is kept.
    assert result.puids == ("fmt/61", "x-fmt/17")
    assert "2 candidate formats" in (result.warning or "")


def test_results_carry_tool_and_signature_versions(
    engine: FidoEngine, samples: dict[str, Path]
) -> None:
    [result] = engine.identify_batch([samples["pdf"]])
    assert (result.engine, result.engine_version) == ("fido", fido_pkg.__version__)
    assert re.match(
        r"PRONOM v\d+ \(formats-v\d+\.xml, container-signature-\d+\.xml", result.signature_release
    )
    assert result.format_name and "PDF" in result.format_name
    assert result.format_version == "1.4"
    assert result.mime == "application/pdf"
    assert result.elapsed > 0


def test_unknown_file_is_a_result_not_an_error(engine: FidoEngine, unknown_file: Path) -> None:
    [result] = engine.identify_batch([unknown_file])
    assert not result.known
    assert (result.basis, result.puids, result.error) == ("none", (), None)


def test_empty_and_missing_files(engine: FidoEngine, tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.touch()
    missing = tmp_path / "gone.pdf"
    got_empty, got_missing = engine.identify_batch([empty, missing])
    assert got_empty.basis == "extension" and got_empty.puid == "x-fmt/18"
    assert "zero-byte" in (got_empty.warning or "")
    assert not got_missing.known and "cannot read file" in (got_missing.error or "")


def test_identification_pickles_and_serialises(
    engine: FidoEngine, samples: dict[str, Path]
) -> None:
    [result] = engine.identify_batch([samples["docx"]])
    assert pickle.loads(pickle.dumps(result)) == result
    data = result.to_dict()
    assert data["puids"] == ["fmt/412"] and data["known"] is True
    assert data["path"] == str(samples["docx"])
    with pytest.raises(AttributeError):
        result.puids = ()  # type: ignore[misc]


def test_same_answers_as_stock_fido(
    engine: FidoEngine, samples: dict[str, Path], unknown_file: Path, tmp_path: Path
) -> None:
    """Our faster matching must not change a single answer of fido's own identify_file."""
    from fido.fido import Fido  # type: ignore[import-untyped]
    from fido.versions import get_local_versions  # type: ignore[import-untyped]

    empty = tmp_path / "empty.txt"
    empty.touch()
    paths = [*samples.values(), unknown_file, empty]
    seen: dict[str, tuple[list[str], str]] = {}

    def capture(name: str, matches: list, delta: float, matchtype: str = "") -> None:
        puids = [m[0].find("puid").text for m in matches]
        seen[name] = (puids, matchtype if puids else "none")

    versions = get_local_versions(fido_pkg.CONFIG_DIR)
    saved = re._MAXCACHE  # type: ignore[attr-defined]
    try:
        stock = Fido(
            quiet=True,
            handle_matches=capture,
            format_files=[versions.pronom_signature, versions.fido_extension_signature],
        )
        for path in paths:
            stock.identify_file(str(path))
    finally:
        re._MAXCACHE = saved  # type: ignore[attr-defined]

    ours = {str(r.path): (list(r.puids), r.basis) for r in engine.identify_batch(paths)}
    # fido repeats a container PUID once per matching signature; we report it once.
    expected = {k: (list(dict.fromkeys(p)), b) for k, (p, b) in seen.items()}
    assert ours == expected


def test_signatures_are_loaded_once_per_process(samples: dict[str, Path]) -> None:
    """Several engines and many files in a fresh process: one signature load."""
    paths = [str(p) for p in samples.values()]
    script = (
        "import sys\n"
        "from preservation.identify import FidoEngine, get_engine\n"
        "from preservation.identify.fido import signature_loads\n"
        "assert signature_loads() == 0\n"
        "for _ in range(3):\n"
        "    FidoEngine().identify_batch(sys.argv[1:])\n"
        "    get_engine('fido').identify_batch(sys.argv[1:])\n"
        "print(signature_loads())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, *paths],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parents[3],
    )
    assert out.stdout.strip() == "1"
    assert fido_module.signature_loads() <= 1  # and this process too


def test_identification_failed_constructor() -> None:
    failed = Identification.failed(
        Path("x"),
        engine="fido",
        engine_version="1",
        signature_release="r",
        error="timeout after 30s",
    )
    assert not failed.known and failed.basis == "none" and failed.puid is None


def test_first_byte_index_never_excludes_a_format_that_could_match() -> None:
    """The index skips formats by first byte; every shortcut must agree with re's parser."""
    import re

    from preservation.identify import fido as engine

    sigs = engine._signatures()
    fast = 0
    for fmt in sigs.formats:
        for _name, patterns in fmt.signatures:
            for position, regex in patterns:
                if position != engine._BOF:
                    continue
                literal = engine._literal_first_byte(regex.pattern)
                if literal is not None:
                    fast += 1
                    assert engine._parsed_first_bytes(regex) == {literal}, regex.pattern
    assert fast > 500  # the shortcut covers fido's common case
    # A format is listed under every byte its signatures allow.
    for byte in (0x00, 0x25, 0x89, 0xFF):
        listed = set(map(id, sigs.formats_by_first_byte[byte]))
        for fmt in sigs.formats:
            if byte in engine._format_first_bytes(fmt):
                assert id(fmt) in listed
    # Unusual shapes fall back to "any byte" rather than guess.
    for pattern in (rb"(?s)\Aa?b", rb"(?s)\A(a|b)?c", rb"(?s)\A.{4}ftyp", rb"(?si)\Aab"):
        assert engine._first_bytes(re.compile(pattern)) == engine._ANY_BYTE, pattern
    assert engine._first_bytes(re.compile(rb"(?s)\A(?:ab|cd)")) == {ord("a"), ord("c")}
    assert engine._first_bytes(re.compile(rb"(?s)\A[\x00-\x02]x")) == {0, 1, 2}


def test_literal_filters_never_change_a_pattern_s_answer(samples: dict[str, Path]) -> None:
    """The prefix and literal-run checks only skip what the regex itself would reject.

    Every fido pattern, as match (start of file) and as search, against every
    sample kind's buffers and buffers made to hold each pattern's own literal
    run (so the filters pass and the regex decides): the filtered answer is
    the plain regex's answer, every time.
    """
    sigs = fido_module._signatures()
    size = sigs.fido.bufsize
    buffers = [p.read_bytes()[:size] for p in samples.values()]
    buffers += [b"", b"\x00" * 40_000, bytes(range(256)) * 256]
    checked = 0
    for fmt in sigs.formats:
        for _name, patterns in fmt.signatures:
            for _position, lazy in patterns:
                plain = lazy.compiled()
                _at, _anchor, run, _gap = fido_module._literals(lazy.pattern)
                own = [b"x" * 33_000 + run + b"y" * 40, run + b"\x00" * 600] if run else []
                for buffer in buffers + own:
                    assert (lazy.match(buffer) is None) == (plain.match(buffer) is None), (
                        lazy.pattern
                    )
                    assert (lazy.search(buffer) is None) == (plain.search(buffer) is None), (
                        lazy.pattern
                    )
                    checked += 1
    assert checked > 20_000


@pytest.mark.parametrize(
    ("pattern", "at", "anchor", "run", "gap"),
    [
        (rb"(?s)\A\x89PNG\r\n", 0, b"\x89PNG\r\n", b"\x89PNG\r\n", False),
        (rb"(?s)\ARIFF.{4}WAVE", 0, b"RIFF", b"RIFF", False),
        (rb"(?s)\A.{8}WAVE.*fmt ", 8, b"WAVE", b"WAVE", False),
        (rb"(?s)\A[\x00-\x7f].{2}AB", 3, b"AB", b"AB", False),
        (rb"(?s)\Aab?cd", 0, b"a", b"cd", False),  # 'b' may be absent: 'cd' has no fixed place
        (rb"(?s)\A(?:ab|cd)ef", 0, b"", b"ef", False),
        (rb"(?s)\A.{32768,70468}CD001", 0, b"", b"CD001", True),
        (rb"(?s)\A.{0,1024}CD001", 0, b"", b"CD001", False),
        (rb"(?i)\AABCD", 0, b"", b"", False),  # case folding: no literal is certain
        (rb"abc|defg", 0, b"", b"", False),  # an alternation at the top: nothing certain
    ],
)
def test_literals_read_from_the_parse(
    pattern: bytes, at: int, anchor: bytes, run: bytes, gap: bool
) -> None:
    assert fido_module._literals(pattern) == (at, anchor, run, gap)
