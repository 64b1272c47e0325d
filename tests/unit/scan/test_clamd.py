"""preservation/scan/clamd.py against the real clamd, on signatures made by tests/scanning.py.

One clamd serves the module (it starts in well under a second on the test
signatures); it listens on a unix socket (path mode, and stream mode with the
``stream:`` prefix) and on 127.0.0.1 (``tcp://``, stream mode).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from preservation.config import Settings
from preservation.errors import ConfigurationError, ScannerUnavailableError
from preservation.scan import ClamdScanner, ClamscanScanner, VirusScanner, scanner_for
from preservation.scan.clamd import parse_version
from tests.scanning import (
    EICAR,
    EICAR_SIGNATURE,
    MARKER,
    MARKER_SIGNATURE,
    SAMPLE_DETECTIONS,
    SAMPLES,
    free_port,
    make_signature_db,
    require_clamd,
    running_clamd,
    write_files,
)

DATABASE = "custom: preservation-test.hdb, preservation-test.ndb (3 signatures)"
MODES = ["path", "stream", "tcp"]


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_signature_db(tmp_path_factory.mktemp("signatures"))


@pytest.fixture(scope="module")
def clamd(db: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The clamd_socket setting for each mode, all served by one clamd."""
    require_clamd()
    port = free_port()
    with running_clamd(db, tmp_path_factory.mktemp("clamd"), tcp_port=port) as sock:
        yield {"path": sock, "stream": f"stream:{sock}", "tcp": f"tcp://127.0.0.1:{port}"}


@pytest.fixture(params=MODES)
def scanner(request: pytest.FixtureRequest, clamd: dict[str, str], db: Path) -> ClamdScanner:
    return ClamdScanner(clamd[request.param], database=db)


def test_clean_files_pass_and_test_signatures_are_named(
    scanner: ClamdScanner, tmp_path: Path
) -> None:
    files = write_files(tmp_path, SAMPLES)
    report = scanner.scan(list(files.values()))

    assert {(d.path.name, d.signature) for d in report.detections} == SAMPLE_DETECTIONS
    assert report.errors == {}
    assert report.scanned == 6
    assert report.engine.startswith("ClamAV 1.")
    assert report.database == DATABASE
    assert not report.clean
    clean = scanner.scan([files["clean.txt"], files["empty"], files["almost-hashed.bin"]])
    assert clean.clean and clean.scanned == 3


def test_awkward_names_are_mapped_back(scanner: ClamdScanner, tmp_path: Path) -> None:
    files = write_files(
        tmp_path,
        {
            "with spaces.txt": b"fine",
            "a": EICAR,
            "a: b": b"fine",  # "a" is a prefix of this name, up to ": "
            "colon: OK": MARKER,  # looks like a verdict
            "ünïcødé – 文件.txt": EICAR,
            "line\nbreak: OK": EICAR,
            "carriage\rreturn": b"fine",
        },
    )
    report = scanner.scan(list(files.values()))

    assert report.errors == {}
    assert {d.path for d in report.detections} == {
        files["a"],
        files["colon: OK"],
        files["ünïcødé – 文件.txt"],
        files["line\nbreak: OK"],
    }
    assert report.scanned == 7


def test_a_symbolic_link_is_scanned_as_its_target(scanner: ClamdScanner, tmp_path: Path) -> None:
    # clamd itself answers "OK" for a link it does not follow, without reading anything.
    target = write_files(tmp_path, {"eicar.com": EICAR})["eicar.com"]
    link = tmp_path / "innocent.txt"
    link.symlink_to(target)
    report = scanner.scan([link])
    assert [(d.path, d.signature) for d in report.detections] == [(link, EICAR_SIGNATURE)]


def test_what_is_not_a_file_is_an_error_not_a_verdict(
    scanner: ClamdScanner, tmp_path: Path
) -> None:
    files = write_files(tmp_path / "folder", {"ok.txt": b"fine"})
    report = scanner.scan([files["ok.txt"], tmp_path / "missing", tmp_path / "folder"])
    assert report.scanned == 1
    assert set(report.errors) == {tmp_path / "missing", tmp_path / "folder"}
    assert "No such file" in report.errors[tmp_path / "missing"]
    assert "directory" in report.errors[tmp_path / "folder"]


def test_a_batch_costs_one_connection(
    scanner: ClamdScanner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = [tmp_path / f"file-{i:03d}.txt" for i in range(200)]
    for i, path in enumerate(files):
        path.write_bytes(EICAR if i % 50 == 7 else f"file {i}\n".encode() * 20)
    connects: list[object] = []
    original = socket.socket.connect

    def counting(self: socket.socket, address: object) -> None:
        connects.append(address)
        original(self, address)  # type: ignore[arg-type]

    monkeypatch.setattr(socket.socket, "connect", counting)
    report = scanner.scan(files)

    assert len(connects) == 1
    assert report.scanned == 200 and report.errors == {}
    assert sorted(d.path.name for d in report.detections) == [
        "file-007.txt",
        "file-057.txt",
        "file-107.txt",
        "file-157.txt",
    ]


@pytest.mark.parametrize("mode", ["stream", "tcp"])
def test_past_stream_max_length_is_an_error_and_the_rest_is_scanned(
    mode: str, clamd: dict[str, str], db: Path, tmp_path: Path
) -> None:
    files = write_files(
        tmp_path,
        {
            "before.txt": b"fine",
            "huge.bin": MARKER + bytes(2 * 2**20),  # clamd's StreamMaxLength is 1M here
            "after.com": EICAR,
            "last.txt": b"fine",
        },
    )
    report = ClamdScanner(clamd[mode], database=db).scan(list(files.values()))

    assert list(report.errors) == [files["huge.bin"]]
    assert "StreamMaxLength" in report.errors[files["huge.bin"]]
    assert [d.path for d in report.detections] == [files["after.com"]]
    assert report.scanned == 3 and not report.clean


def test_path_mode_reads_files_of_any_size(clamd: dict[str, str], tmp_path: Path) -> None:
    huge = write_files(tmp_path, {"huge.bin": bytes(2 * 2**20) + MARKER})["huge.bin"]
    report = ClamdScanner(clamd["path"]).scan([huge])
    assert [d.signature for d in report.detections] == [MARKER_SIGNATURE]


def test_the_release_is_unknown_without_the_folder(clamd: dict[str, str]) -> None:
    report = ClamdScanner(clamd["path"]).scan([])
    assert report.engine.startswith("ClamAV ") and report.database == "unknown"
    assert report.scanned == 0 and report.clean


def test_a_stopped_clamd_is_unavailable(db: Path, tmp_path: Path) -> None:
    require_clamd()
    with running_clamd(db, tmp_path / "clamd") as sock:
        assert ClamdScanner(sock).scan([]).engine.startswith("ClamAV")
    with pytest.raises(ScannerUnavailableError, match="is clamd running") as caught:
        ClamdScanner(sock).scan([Path(__file__)])
    assert sock in str(caught.value)


def test_a_socket_nobody_listens_on_is_unavailable(tmp_path: Path) -> None:
    stale = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(stale))  # left behind, as by a clamd that was killed
    with pytest.raises(ScannerUnavailableError, match="clamd is not running"):
        ClamdScanner(str(stale)).scan([Path(__file__)])
    with pytest.raises(ScannerUnavailableError, match="refuses connections"):
        ClamdScanner(f"tcp://127.0.0.1:{free_port()}").scan([Path(__file__)])


def test_a_clamd_that_stops_answering_is_unavailable(tmp_path: Path) -> None:
    # A hung daemon: the kernel accepts the connection, nobody ever answers.
    path = tmp_path / "hung.sock"
    with socket.socket(socket.AF_UNIX) as hung:
        hung.bind(str(path))
        hung.listen()
        with pytest.raises(ScannerUnavailableError, match="stopped answering"):
            ClamdScanner(str(path), timeout=0.3).scan([Path(__file__)])


def test_version_names_engine_and_official_release() -> None:
    assert parse_version("ClamAV 1.4.6/27420/Thu Nov  5 08:00:00 2026\n") == (
        "ClamAV 1.4.6",
        "27420/Thu Nov  5 08:00:00 2026",
    )
    assert parse_version("ClamAV 1.4.6") == ("ClamAV 1.4.6", None)
    with pytest.raises(ScannerUnavailableError, match="is it clamd"):
        parse_version("HTTP/1.1 400 Bad Request")


@pytest.mark.parametrize(
    ("address", "mode"),
    [
        ("/run/clamav/clamd.ctl", "path"),
        ("stream:/run/clamav/clamd.ctl", "stream"),
        ("tcp://clamav.internal:3310", "stream"),
        ("stream:tcp://[::1]:3310", "stream"),
    ],
)
def test_settings_choose_clamd_and_its_mode(address: str, mode: str, tmp_path: Path) -> None:
    scanner = scanner_for(Settings(home=tmp_path, clamd_socket=address))
    assert isinstance(scanner, ClamdScanner) and isinstance(scanner, VirusScanner)
    assert scanner.mode == mode
    assert not isinstance(scanner, ClamscanScanner)


@pytest.mark.parametrize("address", ["tcp://nohost", "tcp://:3310", "stream:"])
def test_a_malformed_address_is_a_configuration_error(address: str) -> None:
    with pytest.raises(ConfigurationError, match="clamd_socket"):
        ClamdScanner(address)
