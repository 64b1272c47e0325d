"""validate_bag on bags built to break one rule each: every problem found, nothing opened."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import unicodedata
from pathlib import Path

import pytest

from preservation.errors import InvalidSIPError
from preservation.sip import digests as digests_module
from preservation.sip import validate_bag

from .conftest import BagFactory, write_bag


def test_valid_bag_has_no_problems(make_bag: BagFactory) -> None:
    report = validate_bag(make_bag(tagmanifest=True))
    assert report.valid and report.problems == []
    assert report.version == "1.0"
    assert report.algorithms == ["sha256", "sha512"]
    assert report.files_hashed == 2 + 4  # payload + tag files in the tag manifest
    report.raise_if_invalid()


def test_every_problem_is_reported_not_only_the_first(make_bag: BagFactory) -> None:
    bag = make_bag({"a.txt": b"one", "b.txt": b"two", "c.txt": b"three"})
    (bag / "data" / "a.txt").write_bytes(b"ONE")  # digest mismatch, same size
    (bag / "data" / "b.txt").unlink()  # listed, missing
    (bag / "data" / "extra.txt").write_bytes(b"x")  # present, not listed
    report = validate_bag(bag)
    assert not report.valid
    rules = {(p.rule, p.file) for p in report.errors}
    assert ("manifest-digest-mismatch", "data/a.txt") in rules
    assert ("file-missing", "data/b.txt") in rules
    assert ("payload-not-in-manifest", "data/extra.txt") in rules
    assert ("payload-oxum-mismatch", "bag-info.txt") in rules
    # Both algorithms are checked: one mismatch per manifest.
    assert len([p for p in report.errors if p.rule == "manifest-digest-mismatch"]) == 2
    with pytest.raises(InvalidSIPError) as caught:
        report.raise_if_invalid()
    assert len(caught.value.problems) == len(report.problems)


def test_report_serialises_for_json_and_people(make_bag: BagFactory) -> None:
    bag = make_bag()
    (bag / "data" / "a.txt").write_bytes(b"tampered")
    report = validate_bag(bag)
    as_dict = json.loads(json.dumps(report.to_dict()))
    assert as_dict["valid"] is False and as_dict["error_count"] == len(report.errors)
    problem = next(p for p in as_dict["problems"] if p["rule"] == "manifest-digest-mismatch")
    assert problem == {
        "severity": "error",
        "rule": "manifest-digest-mismatch",
        "file": "data/a.txt",
        "message": problem["message"],
        "rfc8493": "3",
    }
    text = report.to_text()
    assert text.startswith(f"Bag {bag}: INVALID")
    assert "[manifest-digest-mismatch] data/a.txt:" in text and "RFC 8493 §3" in text


def test_oxum_mismatch_alone_is_an_error(make_bag: BagFactory) -> None:
    bag = make_bag(oxum=False)
    (bag / "bag-info.txt").write_text("Payload-Oxum: 1.1\n")
    report = validate_bag(bag)
    assert [p.rule for p in report.errors] == ["payload-oxum-mismatch"]


def test_bagit_txt_space_before_colon_is_refused(make_bag: BagFactory) -> None:
    bag = make_bag()
    (bag / "bagit.txt").write_text("BagIt-Version : 1.0\nTag-File-Character-Encoding: UTF-8\n")
    assert "bagit-txt-version" in validate_bag(bag).rules()


def test_unsupported_algorithm_and_missing_manifest(make_bag: BagFactory) -> None:
    bag = make_bag(algorithms=("sha256",))
    (bag / "manifest-sha256.txt").rename(bag / "manifest-whirl.txt")
    report = validate_bag(bag)
    assert {"manifest-algorithm-unsupported", "manifest-missing"} <= report.rules()


def test_malformed_manifest_lines_are_reported(make_bag: BagFactory) -> None:
    bag = make_bag({"a.txt": b"a"}, algorithms=("sha256",))
    with open(bag / "manifest-sha256.txt", "a") as out:
        out.write("nothex data/a.txt\njustonefield\n")
    report = validate_bag(bag)
    assert {"manifest-digest-malformed", "manifest-line-malformed"} <= report.rules()


# ----------------------------------------------------------------------------- paths


@pytest.mark.parametrize(
    ("line_path", "rule"),
    [
        ("../outside.txt", "path-traversal"),
        ("data/../../outside.txt", "path-traversal"),
        ("/etc/passwd", "path-absolute"),
        ("~/secret", "path-home-shortcut"),
        ("C:\\Windows\\win.ini", "path-windows-absolute"),
        ("tag-not-payload.txt", "manifest-path-outside-payload"),
    ],
)
def test_manifest_paths_outside_the_payload_are_refused(
    make_bag: BagFactory, line_path: str, rule: str
) -> None:
    bag = make_bag({"a.txt": b"a"}, algorithms=("sha256",))
    with open(bag / "manifest-sha256.txt", "a") as out:
        out.write(f"{'0' * 64}  {line_path}\n")
    report = validate_bag(bag)
    assert rule in {p.rule for p in report.errors}


def test_percent_encoded_names_are_decoded(make_bag: BagFactory) -> None:
    # Real names: "100%.txt", "line\nfeed.txt", "cr\r.txt" and the literal "%0A.txt".
    files = {"100%.txt": b"1", "line\nfeed.txt": b"2", "cr\r.txt": b"3", "%0A.txt": b"4"}
    names = {
        "100%.txt": "data/100%25.txt",
        "line\nfeed.txt": "data/line%0Afeed.txt",
        "cr\r.txt": "data/cr%0d.txt",
        "%0A.txt": "data/%250A.txt",
    }
    bag = make_bag(files, manifest_names=names)
    report = validate_bag(bag)
    assert report.valid, report.to_text()


def test_undecoded_percent_name_is_missing_in_bagit_1_0(make_bag: BagFactory) -> None:
    bag = make_bag({"100%25.txt": b"1"}, manifest_names={"100%25.txt": "data/100%25.txt"})
    # The manifest says 100%25.txt, i.e. the file "100%.txt", which does not exist.
    assert {"file-missing", "payload-not-in-manifest"} <= validate_bag(bag).rules()


def _never_open(monkeypatch: pytest.MonkeyPatch, forbidden: Path) -> list[str]:
    """Fail the test if anything opens ``forbidden`` (a FIFO would block, a device worse)."""
    opened: list[str] = []
    real_open = os.open

    def guarded(path: object, *args: object, **kwargs: object) -> int:
        if os.fspath(path) == os.fspath(forbidden):  # type: ignore[arg-type]
            opened.append(os.fspath(path))  # type: ignore[arg-type]
            raise AssertionError(f"{path} was opened")
        return real_open(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", guarded)
    return opened


def test_fifo_is_refused_without_being_opened(
    make_bag: BagFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    bag = make_bag({"a.txt": b"a"})
    fifo = bag / "data" / "pipe"
    os.mkfifo(fifo)
    with open(bag / "manifest-sha256.txt", "a") as out:
        out.write(f"{'0' * 64}  data/pipe\n")
    opened = _never_open(monkeypatch, fifo)
    report = validate_bag(bag)
    assert opened == []
    special = [p for p in report.errors if p.rule == "special-file"]
    assert special and special[0].file == "data/pipe" and "FIFO" in special[0].message


def test_device_file_is_refused(make_bag: BagFactory) -> None:
    bag = make_bag({"a.txt": b"a"})
    try:
        os.mknod(bag / "data" / "null", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("creating a device node needs CAP_MKNOD")
    report = validate_bag(bag)
    assert any(p.rule == "special-file" and "character device" in p.message for p in report.errors)


def test_symlink_inside_the_bag_is_refused_unopened(
    make_bag: BagFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    bag = make_bag({"a.txt": b"a"})
    os.symlink("a.txt", bag / "data" / "link.txt")
    opened = _never_open(monkeypatch, bag / "data" / "link.txt")
    report = validate_bag(bag)
    assert opened == []
    assert ("symlink", "data/link.txt") in {(p.rule, p.file) for p in report.errors}


def test_symlink_leaving_the_bag_is_refused_unfollowed(
    make_bag: BagFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"not for the archive")
    bag = make_bag({"a.txt": b"a"})
    os.symlink(secret, bag / "data" / "escape.txt")
    os.symlink(tmp_path, bag / "data" / "escape-dir")
    with open(bag / "manifest-sha256.txt", "a") as out:
        out.write(f"{hashlib.sha256(secret.read_bytes()).hexdigest()}  data/escape.txt\n")
    opened = _never_open(monkeypatch, secret)
    report = validate_bag(bag)
    assert opened == []
    escapes = {p.file for p in report.errors if p.rule == "symlink-escapes"}
    assert escapes == {"data/escape.txt", "data/escape-dir"}


def test_symlinked_tag_file_is_not_read(make_bag: BagFactory, tmp_path: Path) -> None:
    bag = make_bag({"a.txt": b"a"})
    outside = tmp_path / "outside-bagit.txt"
    outside.write_bytes((bag / "bagit.txt").read_bytes())
    (bag / "bagit.txt").unlink()
    os.symlink(outside, bag / "bagit.txt")
    assert {"symlink-escapes", "bagit-txt-missing"} <= validate_bag(bag).rules()


def test_names_colliding_after_nfc_are_refused(make_bag: BagFactory) -> None:
    nfc = unicodedata.normalize("NFC", "Núñez.txt")
    nfd = unicodedata.normalize("NFD", "Núñez.txt")
    assert nfc != nfd
    bag = make_bag({nfc: b"one", nfd: b"two"})
    report = validate_bag(bag)
    collided = {p.file for p in report.errors if p.rule == "name-normalisation-collision"}
    assert collided == {f"data/{nfc}", f"data/{nfd}"}


def test_folders_colliding_after_nfc_are_refused(make_bag: BagFactory) -> None:
    """Two files with distinct names, in folders that merge on a normalising filesystem."""
    nfc = unicodedata.normalize("NFC", "café")
    nfd = unicodedata.normalize("NFD", "café")
    bag = make_bag({f"{nfc}/x.txt": b"one", f"{nfd}/y.txt": b"two"})
    report = validate_bag(bag)
    assert not report.valid
    problems = [p for p in report.errors if p.rule == "name-normalisation-collision"]
    assert {p.file for p in problems} == {f"data/{nfc}", f"data/{nfd}"}
    for p in problems:
        assert ascii(f"data/{nfc}") in p.message and ascii(f"data/{nfd}") in p.message
        assert p.message.count("folder") == 2


def test_file_colliding_with_a_folder_after_nfc_is_refused(make_bag: BagFactory) -> None:
    nfc = unicodedata.normalize("NFC", "café")
    nfd = unicodedata.normalize("NFD", "café")
    bag = make_bag({nfc: b"a file", f"{nfd}/inside.txt": b"in a folder"})
    report = validate_bag(bag)
    problems = {p.file: p for p in report.errors if p.rule == "name-normalisation-collision"}
    assert set(problems) == {f"data/{nfc}", f"data/{nfd}"}
    assert f"the file {ascii(f'data/{nfc}')}" in problems[f"data/{nfc}"].message
    assert f"the folder {ascii(f'data/{nfd}')}" in problems[f"data/{nfc}"].message
    assert f"the folder {ascii(f'data/{nfd}')}" in problems[f"data/{nfd}"].message


def test_nfc_clash_is_reported_once_at_the_shallowest_folder(make_bag: BagFactory) -> None:
    nfc = unicodedata.normalize("NFC", "café")
    nfd = unicodedata.normalize("NFD", "café")
    bag = make_bag({f"{nfc}/x.txt": b"one", f"{nfd}/x.txt": b"two", "other/x.txt": b"3"})
    report = validate_bag(bag)
    collided = sorted(p.file or "" for p in report.errors)
    assert collided == sorted([f"data/{nfc}", f"data/{nfd}"])  # not the files x.txt too
    assert {p.rule for p in report.errors} == {"name-normalisation-collision"}


def test_same_folder_in_one_normalisation_is_accepted(make_bag: BagFactory) -> None:
    nfd = unicodedata.normalize("NFD", "café")
    report = validate_bag(make_bag({f"{nfd}/x.txt": b"1", f"{nfd}/sub/y.txt": b"2"}))
    assert report.valid and report.problems == []


def test_folders_differing_only_in_case_warn(make_bag: BagFactory) -> None:
    report = validate_bag(make_bag({"Photos/a.jpg": b"1", "photos/b.jpg": b"2"}))
    assert report.valid
    warned = {p.file for p in report.warnings if p.rule == "name-case-collision"}
    assert warned == {"data/Photos", "data/photos"}


def test_names_differing_only_in_case_warn(make_bag: BagFactory) -> None:
    report = validate_bag(make_bag({"Readme.txt": b"1", "README.txt": b"2"}))
    assert report.valid and "name-case-collision" in report.rules()


def test_manifest_in_other_normalisation_than_disk_is_accepted_with_warning(
    make_bag: BagFactory,
) -> None:
    nfd = unicodedata.normalize("NFD", "café.txt")
    nfc = unicodedata.normalize("NFC", "café.txt")
    bag = make_bag({nfd: b"x"}, manifest_names={nfd: f"data/{nfc}"})
    report = validate_bag(bag)
    assert report.valid and "path-normalisation-differs" in report.rules()


def test_file_named_with_trailing_space_is_a_valid_payload_file(make_bag: BagFactory) -> None:
    files = {"x ": b"trailing space", "y\u00a0": b"trailing nbsp", "x": b"no space"}
    bag = make_bag(files, tagmanifest=True)
    assert (bag / "manifest-sha256.txt").read_text().count("data/x \n") == 1
    report = validate_bag(bag)
    assert report.valid and report.problems == [], report.to_text()
    assert report.files_hashed == 3 + 4

    (bag / "data" / "x ").write_bytes(b"TRAILING SPACE")  # same size, other bytes
    report = validate_bag(bag)
    assert {(p.rule, p.file) for p in report.errors} == {("manifest-digest-mismatch", "data/x ")}


def test_manifest_with_crlf_keeps_the_trailing_space(make_bag: BagFactory) -> None:
    bag = make_bag({"x ": b"trailing space"}, algorithms=("sha256",))
    manifest = bag / "manifest-sha256.txt"
    manifest.write_bytes(manifest.read_bytes().replace(b"\n", b"\r\n"))
    report = validate_bag(bag)
    assert report.valid and report.problems == [], report.to_text()


def test_manifest_path_with_spurious_trailing_space_names_another_file(
    make_bag: BagFactory,
) -> None:
    bag = make_bag({"x": b"content"}, manifest_names={"x": "data/x "})
    report = validate_bag(bag)
    missing = [p for p in report.errors if p.rule == "file-missing"]
    assert [p.file for p in missing] == ["data/x ", "data/x "]  # sha256 and sha512 manifests
    assert "'data/x' exists" in missing[0].message
    assert ("payload-not-in-manifest", "data/x") in {(p.rule, p.file) for p in report.errors}


# ----------------------------------------------------------------------------- fetch.txt


def _holey(make_bag: BagFactory) -> Path:
    bag = make_bag({"here.txt": b"here", "away.txt": b"away"})
    (bag / "data" / "away.txt").unlink()
    (bag / "fetch.txt").write_text("https://example.org/away.txt 4 data/away.txt\n")
    return bag


def test_fetch_entry_without_the_file_is_refused_for_ingest(make_bag: BagFactory) -> None:
    report = validate_bag(_holey(make_bag))
    assert [(p.rule, p.file) for p in report.errors] == [("fetch-file-absent", "data/away.txt")]


def test_holey_bag_is_rfc_valid_when_fetch_is_not_checked(make_bag: BagFactory) -> None:
    report = validate_bag(_holey(make_bag), check_fetch=False)
    assert report.valid, report.to_text()
    assert "fetch-file-pending" in report.rules()


def test_fetch_entry_whose_file_is_present_is_fine(make_bag: BagFactory) -> None:
    bag = make_bag({"a.txt": b"a"})
    (bag / "fetch.txt").write_text("https://example.org/a.txt - data/a.txt\n")
    assert validate_bag(bag).valid


@pytest.mark.parametrize(
    ("line", "rule"),
    [
        ("https://example.org/x 1 ../../etc/passwd", "path-traversal"),
        ("https://example.org/x 1 /etc/passwd", "path-absolute"),
        ("https://example.org/x 1 bagit.txt", "fetch-path-outside-payload"),
        ("not-a-url 1 data/a.txt", "fetch-url-malformed"),
        ("https://example.org/x many data/a.txt", "fetch-line-malformed"),
    ],
)
def test_bad_fetch_lines_are_refused(make_bag: BagFactory, line: str, rule: str) -> None:
    bag = make_bag({"a.txt": b"a"})
    (bag / "fetch.txt").write_text(line + "\n")
    assert rule in {p.rule for p in validate_bag(bag).errors}


# ----------------------------------------------------------------------------- digests


def test_each_file_is_read_once_for_all_algorithms(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    payload = {"big.bin": os.urandom(3 * (1 << 20) + 17), "small.txt": b"s"}
    bag = write_bag(tmp_path / "bag", payload, algorithms=("md5", "sha256", "sha512"))
    read = []
    real = os.readv

    def counting(fd: int, buffers: list[memoryview]) -> int:
        n = real(fd, buffers)
        read.append(n)
        return n

    monkeypatch.setattr(digests_module.os, "readv", counting)
    report = validate_bag(bag, processes=2)
    assert report.valid
    assert sum(read) == sum(len(c) for c in payload.values())
    assert max(read) <= 1 << 20


def test_single_process_gives_the_same_report(make_bag: BagFactory) -> None:
    bag = make_bag({f"f{i}.txt": str(i).encode() for i in range(300)})
    (bag / "data" / "f7.txt").write_bytes(b"x")
    one = validate_bag(bag, processes=1)
    two = validate_bag(bag, processes=2)
    assert one.to_dict() == two.to_dict()
