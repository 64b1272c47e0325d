"""preservation/scan/clamscan.py: the real clamscan, once per batch, on signatures made here."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from preservation.config import Settings
from preservation.errors import ScannerUnavailableError
from preservation.scan import ClamscanScanner, VirusScanner, scanner_for
from tests.scanning import (
    EICAR,
    MARKER,
    SAMPLE_DETECTIONS,
    SAMPLES,
    make_signature_db,
    require_clamscan,
    write_files,
)

DATABASE = "custom: preservation-test.hdb, preservation-test.ndb (3 signatures)"


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_signature_db(tmp_path_factory.mktemp("signatures"))


@pytest.fixture
def scanner(db: Path) -> ClamscanScanner:
    require_clamscan()
    return ClamscanScanner(db)


class CountingPopen(subprocess.Popen):  # type: ignore[type-arg]
    """The real Popen, counted: proof that a batch is one process."""

    commands: list[list[str]] = []

    def __init__(self, args: list[str], *rest: object, **kw: object) -> None:
        CountingPopen.commands.append(list(args))
        super().__init__(args, *rest, **kw)  # type: ignore[call-overload]


@pytest.fixture
def processes(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    CountingPopen.commands = []
    monkeypatch.setattr(subprocess, "Popen", CountingPopen)
    return CountingPopen.commands


def test_clean_files_pass_and_test_signatures_are_named(
    scanner: ClamscanScanner, tmp_path: Path
) -> None:
    files = write_files(tmp_path, SAMPLES)
    report = scanner.scan(list(files.values()))

    assert {(d.path.name, d.signature) for d in report.detections} == SAMPLE_DETECTIONS
    assert report.errors == {} and report.scanned == 6
    assert report.engine.startswith("ClamAV 1.")
    assert report.database == DATABASE
    clean = scanner.scan([files["clean.txt"], files["empty"], files["almost-hashed.bin"]])
    assert clean.clean and clean.scanned == 3


def test_awkward_names_in_one_process(
    scanner: ClamscanScanner, tmp_path: Path, processes: list[list[str]]
) -> None:
    scanner.scan([])  # the engine's version, asked once per state of the database
    processes.clear()
    files = write_files(
        tmp_path,
        {
            "with spaces.txt": b"fine",
            "a": EICAR,
            "a: b": b"fine",  # "a" is a prefix of this name, up to ": "
            "colon: OK": MARKER,  # looks like a verdict
            "ünïcødé – 文件.txt": EICAR,
            "line\nbreak: OK": EICAR,  # cannot go in a file list as it is
            "line\nclean": b"fine",
            "carriage\rreturn": b"fine",
        },
    )
    latin1 = os.fsdecode(os.fsencode(tmp_path) + b"/caf\xe9")  # not UTF-8 at all
    Path(latin1).write_bytes(EICAR)
    report = scanner.scan([*files.values(), Path(latin1)])

    assert report.errors == {}
    assert {d.path for d in report.detections} == {
        files["a"],
        files["colon: OK"],
        files["ünïcødé – 文件.txt"],
        files["line\nbreak: OK"],
        Path(latin1),
    }
    assert report.scanned == 9
    assert len(processes) == 1


def test_a_batch_is_one_process(
    scanner: ClamscanScanner, tmp_path: Path, processes: list[list[str]]
) -> None:
    scanner.scan([])
    processes.clear()
    files = [tmp_path / f"file-{i:03d}.txt" for i in range(200)]
    for i, path in enumerate(files):
        path.write_bytes(EICAR if i % 50 == 7 else f"file {i}\n".encode() * 20)
    report = scanner.scan(files)

    assert len(processes) == 1 and any(a.startswith("--file-list=") for a in processes[0])
    assert report.scanned == 200 and report.errors == {}
    assert len(report.detections) == 4


def test_what_is_not_a_file_is_an_error_not_a_verdict(
    scanner: ClamscanScanner, tmp_path: Path
) -> None:
    # Given a directory in its file list, clamscan says nothing at all about it.
    files = write_files(tmp_path / "folder", {"ok.txt": b"fine"})
    os.mkfifo(tmp_path / "pipe")
    report = scanner.scan(
        [files["ok.txt"], tmp_path / "missing", tmp_path / "folder", tmp_path / "pipe"]
    )
    assert report.scanned == 1
    assert set(report.errors) == {tmp_path / "missing", tmp_path / "folder", tmp_path / "pipe"}
    assert "named pipe" in report.errors[tmp_path / "pipe"]


def test_a_file_past_the_size_limit_is_not_reported_clean(
    scanner: ClamscanScanner, tmp_path: Path
) -> None:
    # clamscan skips a file over --max-filesize (ours: 4000 MB, its highest) and,
    # without --alert-exceeds-max, would call it clean, unread.
    big = tmp_path / "video.mkv"
    with big.open("wb") as f:
        f.truncate(4100 * 2**20)  # sparse: costs nothing to write or to skip
    report = scanner.scan([big])
    assert not report.clean
    assert "not fully scanned" in report.errors[big]
    assert "MaxFileSize" in report.errors[big]


@pytest.mark.parametrize("make", ["empty", "missing"])
def test_a_folder_without_signatures_is_unavailable_and_named(make: str, tmp_path: Path) -> None:
    require_clamscan()
    folder = tmp_path / "no-signatures-here"
    if make == "empty":
        folder.mkdir()
    clean = write_files(tmp_path / "files", {"ok.txt": b"fine"})["ok.txt"]
    with pytest.raises(ScannerUnavailableError) as caught:
        ClamscanScanner(folder).scan([clean])
    assert str(folder) in str(caught.value) and "signatures" in str(caught.value)


def test_clamscan_not_installed_is_unavailable(tmp_path: Path) -> None:
    scanner = ClamscanScanner(tmp_path, executable="clamscan-that-is-not-installed")
    with pytest.raises(ScannerUnavailableError, match="clamscan is not installed"):
        scanner.scan([Path(__file__)])


def test_settings_without_a_socket_choose_clamscan(tmp_path: Path) -> None:
    scanner = scanner_for(Settings(home=tmp_path, clamd_socket=None, clamav_db=tmp_path / "db"))
    assert isinstance(scanner, ClamscanScanner) and isinstance(scanner, VirusScanner)
    assert scanner.database == tmp_path / "db"
