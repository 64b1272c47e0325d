"""write_aip_bag: a stock-valid BagIt 1.0 bag, trusting staging's digests."""

from __future__ import annotations

import datetime as dt
import hashlib
import subprocess
from pathlib import Path

import bagit
import pytest

from preservation import __version__
from preservation.aip import (
    ALGORITHMS,
    decode_manifest_path,
    encode_manifest_path,
    write_aip_bag,
)
from preservation.aip import bag as bag_module
from preservation.errors import FixityMismatchError, MetadataError

from .conftest import AIP_ID, SAMPLE, BuildAIP


def read_tags(path: Path) -> list[tuple[str, str]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [tuple(line.split(": ", 1)) for line in lines]  # type: ignore[misc]


def test_bag_validates_with_stock_bagit_and_uses_only_sha256_sha512(build_aip: BuildAIP) -> None:
    built = build_aip()
    root = built.layout.root
    bag = bagit.Bag(str(root))
    bag.validate()  # full validation: every payload and tag digest is checked
    assert bag.version_info == (1, 0)
    assert sorted(bag.algorithms) == ["sha256", "sha512"]
    names = sorted(p.name for p in root.iterdir())
    assert names == [
        "bag-info.txt",
        "bagit.txt",
        "data",
        "manifest-sha256.txt",
        "manifest-sha512.txt",
        "tagmanifest-sha256.txt",
        "tagmanifest-sha512.txt",
    ]
    tag_manifest = (root / "tagmanifest-sha256.txt").read_text(encoding="utf-8")
    assert sorted(line.split("  ")[1] for line in tag_manifest.splitlines()) == [
        "bag-info.txt",
        "bagit.txt",
        "manifest-sha256.txt",
        "manifest-sha512.txt",
    ]


def test_payload_follows_csip_layout(build_aip: BuildAIP) -> None:
    built = build_aip()
    listed = set(built.summary.digests)
    sample_payload = {
        p.relative_to(SAMPLE / "data").as_posix()
        for p in (SAMPLE / "data").rglob("*")
        if p.is_file()
    }
    for rel in sample_payload:
        assert f"data/representations/rep1/data/{rel}" in listed
    for expected in (
        "data/METS.xml",
        "data/representations/rep1/METS.xml",
        "data/metadata/descriptive/dc.xml",
        "data/metadata/preservation/premis.xml",
        "data/submission/bagit.txt",
        "data/submission/bag-info.txt",
        "data/submission/manifest-sha256.txt",
        "data/submission/manifest-sha512.txt",
        "data/submission/tagmanifest-sha256.txt",
        "data/submission/tagmanifest-sha512.txt",
        "data/schemas/mets.xsd",
        "data/schemas/premis/premis-v3-0.xsd",
    ):
        assert expected in listed, expected
    assert not any(p.endswith(".json") for p in listed)  # only XSDs are carried
    assert (built.layout.submission / "bag-info.txt").read_bytes() == (
        SAMPLE / "bag-info.txt"
    ).read_bytes()


def test_bag_info_says_what_the_aip_is(build_aip: BuildAIP) -> None:
    built = build_aip()
    tags = read_tags(built.layout.root / "bag-info.txt")
    files = [p for p in (built.layout.root / "data").rglob("*") if p.is_file()]
    oxum = f"{sum(p.stat().st_size for p in files)}.{len(files)}"
    assert tags == [
        ("AIP-Identifier", AIP_ID),
        ("AIP-Version", "1"),
        ("Tenant", "demo"),
        ("Source-Bag-Name", "sample-collection"),
        ("External-Identifier", "EX-2024-0001"),
        ("Source-Organization", "Musée d'Exemple des Beaux-Arts"),
        ("Bagging-Date", "2024-06-01"),
        ("Bag-Software-Agent", f"preservation {__version__}"),
        ("Payload-Oxum", oxum),
    ]
    assert built.summary.payload_oxum == oxum


def test_bag_info_values_cannot_forge_tags(build_aip: BuildAIP) -> None:
    info = {
        "external-identifier": ["A-1", "A-2\nAIP-Identifier: forged"],
        "Source-Organization": "One\r\nTwo",
    }
    built = build_aip(bag_info=info)
    tags = read_tags(built.layout.root / "bag-info.txt")
    assert [v for k, v in tags if k == "AIP-Identifier"] == [AIP_ID]
    assert ("External-Identifier", "A-1") in tags
    assert ("External-Identifier", "A-2 AIP-Identifier: forged") in tags
    assert ("Source-Organization", "One Two") in tags


def test_known_digests_are_trusted_not_recomputed(
    build_aip: BuildAIP, monkeypatch: pytest.MonkeyPatch
) -> None:
    hashed: list[Path] = []
    real = bag_module.hash_file

    def spy(path: Path) -> dict[str, str]:
        hashed.append(Path(path))
        return real(path)

    monkeypatch.setattr(bag_module, "hash_file", spy)
    built = build_aip()
    rep_data = built.layout.representation_data
    assert hashed, "METS, schemas and submission files must be hashed here"
    assert not [p for p in hashed if rep_data in p.parents]
    assert set(built.summary.hashed_here).isdisjoint(built.known_digests)
    assert len(hashed) == len(set(hashed))  # one read per file for both algorithms


def test_a_wrong_known_digest_is_written_and_then_fails_validation(build_aip: BuildAIP) -> None:
    victim = "data/representations/rep1/data/images/scans/page-001.tif"

    def tamper(known: dict[str, dict[str, str]]) -> None:
        known[victim] = {"sha256": "0" * 64, "sha512": "0" * 128}

    built = build_aip(tamper=tamper)
    manifest = (built.layout.root / "manifest-sha256.txt").read_text(encoding="utf-8")
    assert f"{'0' * 64}  {victim}\n" in manifest  # proof it was not recomputed
    with pytest.raises(bagit.BagValidationError) as err:
        bagit.Bag(str(built.layout.root)).validate()
    assert any(victim in str(d) for d in err.value.details)


def test_manifests_are_sha256sum_compatible(build_aip: BuildAIP) -> None:
    """The docs promise recovery with coreutils alone; check that promise."""
    root = build_aip().layout.root
    for tool, manifest in (
        ("sha256sum", "manifest-sha256.txt"),
        ("sha512sum", "manifest-sha512.txt"),
        ("sha256sum", "tagmanifest-sha256.txt"),
        ("sha512sum", "tagmanifest-sha512.txt"),
    ):
        done = subprocess.run(
            [tool, "--check", "--strict", "--quiet", manifest],
            cwd=root,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stdout + done.stderr


def test_manifest_lines_are_sorted(build_aip: BuildAIP) -> None:
    root = build_aip().layout.root
    for alg in ALGORITHMS:
        paths = [
            line.split("  ", 1)[1]
            for line in (root / f"manifest-{alg}.txt").read_text(encoding="utf-8").splitlines()
        ]
        assert paths == sorted(paths)


@pytest.mark.parametrize(
    ("raw", "encoded"),
    [
        ("plain/name.txt", "plain/name.txt"),
        ("100%.txt", "100%25.txt"),
        ("a\nb\rc\r\nd", "a%0Ab%0Dc%0D%0Ad"),
        ("%0A literally", "%250A literally"),
        ("café/ß.txt", "café/ß.txt"),
    ],
)
def test_manifest_path_encoding_round_trips(raw: str, encoded: str) -> None:
    assert encode_manifest_path(raw) == encoded
    assert decode_manifest_path(encoded) == raw
    assert decode_manifest_path(encoded.replace("%0A", "%0a")) == raw


def test_awkward_names_are_percent_encoded_in_manifests(tmp_path: Path) -> None:
    root = tmp_path / "aip"
    (root / "data").mkdir(parents=True)
    (root / "data" / "METS.xml").write_bytes(b"<mets/>")
    awkward = "100%\nsure\r.txt"
    (root / "data" / awkward).write_bytes(b"x")
    summary = write_aip_bag(
        root,
        aip_id=AIP_ID,
        version=1,
        tenant="t",
        source_bag_name="b",
        bag_info={},
        known_digests={},
        processes=1,
    )
    text = (root / "manifest-sha256.txt").read_text(encoding="utf-8")
    assert len(text.splitlines()) == 2  # the LF inside the name did not split a line
    line = f"{hashlib.sha256(b'x').hexdigest()}  data/100%25%0Asure%0D.txt\n"
    assert line in text
    assert f"data/{awkward}" in summary.digests


def test_rerun_is_idempotent_and_drops_stale_manifests(build_aip: BuildAIP) -> None:
    built = build_aip()
    root = built.layout.root
    before = {p.name: p.read_bytes() for p in root.iterdir() if p.is_file()}
    (root / "manifest-md5.txt").write_text("stale\n")
    (root / "bag-info.txt.partial").write_text("left by a crash\n")
    write_aip_bag(
        root,
        aip_id=AIP_ID,
        version=1,
        tenant="demo",
        source_bag_name="sample-collection",
        bag_info=built.sip_info,
        known_digests=built.known_digests,
        bagging_date=built_date(root),
    )
    after = {p.name: p.read_bytes() for p in root.iterdir() if p.is_file()}
    assert after == before


def built_date(root: Path) -> dt.date:
    value = dict(read_tags(root / "bag-info.txt"))["Bagging-Date"]
    return dt.date.fromisoformat(value)


def test_refuses_a_package_without_root_mets(tmp_path: Path) -> None:
    (tmp_path / "data" / "x").mkdir(parents=True)
    with pytest.raises(MetadataError, match="METS.xml"):
        write_aip_bag(
            tmp_path,
            aip_id=AIP_ID,
            version=1,
            tenant="t",
            source_bag_name="b",
            bag_info={},
            known_digests={},
        )
    assert not (tmp_path / "bagit.txt").exists()


def test_refuses_strangers_at_the_bag_root(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "METS.xml").write_bytes(b"<mets/>")
    (tmp_path / "notes.txt").write_text("would go to tape unmanifested")
    with pytest.raises(MetadataError, match="notes.txt"):
        write_aip_bag(
            tmp_path,
            aip_id=AIP_ID,
            version=1,
            tenant="t",
            source_bag_name="b",
            bag_info={},
            known_digests={},
        )


def test_known_digest_of_a_missing_file_is_a_fixity_error(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "METS.xml").write_bytes(b"<mets/>")
    gone = "data/representations/rep1/data/gone.tif"
    with pytest.raises(FixityMismatchError) as err:
        write_aip_bag(
            tmp_path,
            aip_id=AIP_ID,
            version=1,
            tenant="t",
            source_bag_name="b",
            bag_info={},
            known_digests={gone: {"sha256": "a" * 64, "sha512": "b" * 128}},
        )
    assert err.value.path == gone


def test_malformed_known_digest_is_refused(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "METS.xml").write_bytes(b"<mets/>")
    with pytest.raises(ValueError, match="sha512"):
        write_aip_bag(
            tmp_path,
            aip_id=AIP_ID,
            version=1,
            tenant="t",
            source_bag_name="b",
            bag_info={},
            known_digests={"data/METS.xml": {"sha256": "a" * 64}},
        )
