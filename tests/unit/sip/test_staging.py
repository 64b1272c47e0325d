"""stage_payload / validate_and_stage: verified copies, AIP digests, nothing partial left."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from preservation.errors import FixityMismatchError, InvalidSIPError
from preservation.sip import digests as digests_module
from preservation.sip import stage_payload, validate_and_stage

from .conftest import BagFactory, tree_digest, write_bag


def test_stage_copies_and_digests(make_bag: BagFactory, tmp_path: Path) -> None:
    files = {"a.txt": b"alpha\n", "sub/b.bin": os.urandom(3 << 20), "100%.txt": b"pct"}
    bag = make_bag(
        files, algorithms=("md5", "sha256"), manifest_names={"100%.txt": "data/100%25.txt"}
    )
    dest = tmp_path / "staging"
    staged = stage_payload(bag, dest, processes=2)
    assert [s.relpath for s in staged] == ["data/100%.txt", "data/a.txt", "data/sub/b.bin"]
    for s in staged:
        content = files[s.relpath.removeprefix("data/")]
        assert (dest / s.relpath).read_bytes() == content
        assert s.size == len(content)
        assert s.sha256 == hashlib.sha256(content).hexdigest()
        assert s.sha512 == hashlib.sha512(content).hexdigest()
        assert s.submitted == {
            "md5": hashlib.md5(content).hexdigest(),
            "sha256": hashlib.sha256(content).hexdigest(),
        }
    assert not list(dest.rglob(".*.part"))


def test_each_payload_byte_is_read_once_while_staging(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    payload = {"big.bin": os.urandom(5 << 20), "s.txt": b"s"}
    bag = write_bag(tmp_path / "bag", payload, algorithms=("sha256",))
    read: list[int] = []
    real = os.readv

    def counting(fd: int, buffers: list[memoryview]) -> int:
        n = real(fd, buffers)
        read.append(n)
        return n

    monkeypatch.setattr(digests_module.os, "readv", counting)
    report, staged = validate_and_stage(bag, tmp_path / "dest")
    assert report.valid and len(staged) == 2
    assert sum(read) == sum(len(c) for c in payload.values())


def test_mismatch_raises_and_leaves_no_file(make_bag: BagFactory, tmp_path: Path) -> None:
    bag = make_bag({"good.txt": b"good", "bad.txt": b"original", "big.bin": os.urandom(2 << 20)})
    (bag / "data" / "bad.txt").write_bytes(b"tampered")
    (bag / "bag-info.txt").unlink()  # keep the Oxum out of it: only fixity is wrong
    before = tree_digest(bag)
    dest = tmp_path / "staging"
    with pytest.raises(FixityMismatchError) as caught:
        stage_payload(bag, dest)
    assert "data/bad.txt" in caught.value.message
    assert caught.value.context["files"] == ["data/bad.txt"]
    assert tree_digest(bag) == before, "the SIP is never modified"
    leftovers = [p for p in dest.rglob("*") if p.is_file()] if dest.exists() else []
    assert leftovers == []


def test_structural_error_copies_nothing_but_reports_digests(
    make_bag: BagFactory, tmp_path: Path
) -> None:
    bag = make_bag({"a.txt": b"a", "b.txt": b"b"})
    (bag / "data" / "b.txt").write_bytes(b"B")
    (bag / "data" / "unlisted.txt").write_bytes(b"u")
    dest = tmp_path / "staging"
    report, staged = validate_and_stage(bag, dest)
    assert staged == []
    assert {"payload-not-in-manifest", "manifest-digest-mismatch"} <= report.rules()
    assert not dest.exists() or not any(dest.rglob("*"))
    with pytest.raises(InvalidSIPError):
        stage_payload(bag, tmp_path / "staging2")


def test_staging_inside_the_bag_is_refused(make_bag: BagFactory) -> None:
    bag = make_bag()
    with pytest.raises(ValueError):
        stage_payload(bag, bag / "data" / "staged")


def test_restaging_overwrites_cleanly(make_bag: BagFactory, tmp_path: Path) -> None:
    bag = make_bag()
    dest = tmp_path / "staging"
    first = stage_payload(bag, dest)
    second = stage_payload(bag, dest)
    assert first == second


def test_relative_staging_path_works(
    make_bag: BagFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bag = make_bag()
    monkeypatch.chdir(tmp_path)
    staged = stage_payload(bag, Path("staging"))
    assert (tmp_path / "staging" / staged[0].relpath).is_file()


def test_staging_where_the_copy_would_overwrite_the_bag_is_refused(tmp_path: Path) -> None:
    bag = write_bag(tmp_path / "data" / "bag", {"a.txt": b"a"})
    with pytest.raises(ValueError):
        stage_payload(bag, tmp_path)


def test_file_with_trailing_space_is_staged_under_its_own_name(
    make_bag: BagFactory, tmp_path: Path
) -> None:
    files = {"x ": b"with a space", "x": b"without"}
    dest = tmp_path / "staging"
    staged = stage_payload(make_bag(files), dest, processes=2)
    assert sorted(s.relpath for s in staged) == ["data/x", "data/x "]
    assert (dest / "data" / "x ").read_bytes() == b"with a space"
    assert (dest / "data" / "x").read_bytes() == b"without"


def test_one_large_file_spreads_its_algorithms_and_gets_the_same_digests(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fewer large files than threads: sha256 and sha512 of one file run side by side."""
    import threading

    import bagit

    from preservation.sip import digests, validate_and_stage

    bag = tmp_path / "bag"
    bag.mkdir()
    payload = os.urandom(3 << 20) + b"tail"
    (bag / "big.bin").write_bytes(payload)
    bagit.make_bag(str(bag), checksums=["sha256", "sha512"])
    monkeypatch.setattr(digests, "SPLIT_BYTES", 1 << 20)
    seen: set[str] = set()
    real = digests._hasher

    def spy(name: str):  # type: ignore[no-untyped-def]
        h = real(name)

        class Spy:
            def update(self, data):  # type: ignore[no-untyped-def]
                seen.add(threading.current_thread().name.split("_")[0])
                h.update(data)

            def hexdigest(self) -> str:
                return h.hexdigest()

        return Spy()

    monkeypatch.setattr(digests, "_hasher", spy)
    report, staged = validate_and_stage(bag, tmp_path / "dest", processes=2)
    assert report.valid, report.to_text()
    [f] = staged
    assert f.sha256 == hashlib.sha256(payload).hexdigest()
    assert f.sha512 == hashlib.sha512(payload).hexdigest()
    assert (tmp_path / "dest" / f.relpath).read_bytes() == payload
    assert {"digest", "digest-alg"} <= seen  # both threads hashed
