"""Format migration end to end, with the real tools: a new version, the originals untouched.

The sample collection (a PNG, a JPEG, an uncompressed TIFF, a WAV, a PDF and
a Word document among its nine files) and a bag holding a lossless film go
through ingest into emulated tape under a private data root, then through
``preservation.migrate`` as the CLI and the API drive it. What is asserted is
what a curator and a reader in 2070 rely on: version 2 holds only the
outputs plus a complete METS, every check is in the PREMIS, the originals are
the same bytes on tape, and any version can be rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bagit
import pytest
from sqlalchemy import select

from preservation import ingest
from preservation.catalog import AIP, AIPVersion, File, PremisEvent, service, session_scope
from preservation.catalog.models import Migration
from preservation.config import Settings
from preservation.context import Context, open_context
from preservation.metadata import read_mets, validate_mets
from preservation.migrate import run
from preservation.migrate import service as migrations
from preservation.migrate.policy import default_policy_path, load_policy
from preservation.storage.recovery import extract_current_files, recover
from preservation.storage.service import release_drives
from tests.conftest import require_program

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "bags" / "sample-collection"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _tools() -> None:
    for program in ("ffmpeg", "gs", "soffice", "mediainfo", "exiftool", "mediaconch"):
        require_program(program)


@pytest.fixture
def ctx(settings: Settings) -> Iterator[Context]:
    c = open_context(settings)
    yield c
    c.close()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): sha256(p) for p in sorted(root.rglob("*")) if p.is_file()
    }


def ingest_bag(ctx: Context, bag: Path = SAMPLE, tenant: str = "museum") -> str:
    result = ingest.run_ingest(ctx, bag, tenant=tenant)
    assert result.state == "committed", result
    assert result.aip_id
    return result.aip_id


def film_bag(where: Path) -> Path:
    """A bag with a lossless film (Huffyuv video, PCM sound in AVI): FFV1 must keep every frame."""
    bag = where / "film"
    (bag / "reels").mkdir(parents=True)
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=96x64:rate=10",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=22050",
            "-t",
            "1.5",
            "-c:v",
            "huffyuv",
            "-pix_fmt",
            "yuv422p",
            "-c:a",
            "pcm_s16le",
            str(bag / "reels" / "reel-1.avi"),
        ],
        check=True,
    )
    subprocess.run(
        [
            "ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=frequency=330:sample_rate=44100",
            "-t", "2", "-c:a", "aac", str(bag / "reels" / "commentary.m4a"),
        ],
        check=True,
    )  # fmt:skip
    bagit.make_bag(str(bag), {"Source-Organization": "Film archive"}, checksums=["sha256"])
    return bag


def migrate(ctx: Context, aip_ids: list[str], policy_path: Path | None = None, **kw: Any) -> Any:
    policy, text = migrations.read_policy(policy_path)
    with session_scope(ctx.sessions) as s:
        view = migrations.start_migration(s, policy, text, aip_ids=aip_ids, who="jane@museum", **kw)
    run.run_migration(ctx, view.migration_id)
    with session_scope(ctx.sessions) as s:
        return migrations.get_migration(s, view.migration_id, None)


def current(ctx: Context, aip_id: str) -> dict[str, File]:
    from preservation.migrate.plan import current_files

    with session_scope(ctx.sessions) as s:
        rows = current_files(s, aip_id)
        for r in rows:
            s.expunge(r)
    return {r.original_name: r for r in rows}


def test_the_sample_collection_becomes_version_2_and_version_1_stays_as_it_was(
    ctx: Context, tmp_path: Path
) -> None:
    aip_id = ingest_bag(ctx)
    v1 = recover(ctx, aip_id, 1, dest_dir=tmp_path / "v1-before")
    before = current(ctx, aip_id)

    with session_scope(ctx.sessions) as s:
        plan = migrations.dry_run(s, load_policy(None), aip_ids=[aip_id])
    planned = {
        f["path"]: [a["target_puid"] for a in f["actions"]] for f in plan["aips"][0]["files"]
    }
    assert set(planned) == {
        "data/images/drawings/circle.png",
        "data/images/photos/sunset.jpg",
        "data/audio/tone-440hz.wav",
        "data/documents/condition-report.pdf",
        "data/documents/letter to donor.docx",
    }, planned  # the uncompressed TIFF is already what the image rule makes
    assert len(planned["data/documents/letter to donor.docx"]) == 2  # PDF/A and ODT
    with session_scope(ctx.sessions) as s:  # a dry run changes nothing
        assert len(s.get_one(AIP, aip_id).versions) == 1

    view = migrate(ctx, [aip_id])
    assert view.state == "done", view
    [item] = view.items
    assert (item.state, item.version, item.files_failed) == ("committed", 2, 0), item
    assert view.files_migrated == 6
    for f in item.files:
        assert f.tool_version and f.checks, f
        assert all(c["passed"] for c in f.checks), f
        names = {c["name"] for c in f.checks}
        assert {"tool exit", "output", "identification"} <= names, names

    after = current(ctx, aip_id)
    assert set(after) == {
        "data/images/drawings/circle.tif",
        "data/images/photos/sunset.tif",
        "data/images/scans/page-001.tif",
        "data/audio/tone-440hz.flac",
        "data/documents/condition-report.pdf",
        "data/documents/letter to donor.pdf",
        "data/documents/letter to donor.odt",
        "data/metadata/catalogue.xml",
        "data/notes/café.txt",
        "data/tables/measurements.csv",
    }, sorted(after)
    # The unchanged files are the very rows of version 1; the outputs derive from sources.
    for name in ("data/images/scans/page-001.tif", "data/notes/café.txt"):
        assert after[name].id == before[name].id
    assert (
        after["data/audio/tone-440hz.flac"].derived_from == before["data/audio/tone-440hz.wav"].id
    )
    assert after["data/documents/condition-report.pdf"].aip_path == (
        "data/representations/rep2/data/documents/condition-report.pdf"
    )
    with session_scope(ctx.sessions) as s:
        sources = s.scalars(select(File).where(File.superseded_in == 2)).all()
        assert len(sources) == 5
        assert service.verify_event_chain(s, "museum") == []
        [event] = [e for e in service.list_events(s, aip_id=aip_id) if e.type == "migration"]
        assert event.outcome == "success" and event.objects["version"] == 2
        versions = s.scalars(select(AIPVersion).where(AIPVersion.aip_id == aip_id)).all()
        assert [(v.number, v.reason, v.committed_at is not None) for v in versions] == [
            (1, "ingest", True),
            (2, "migration", True),
        ]

    # Asked again, nothing is left to do: the outputs are the targets, and the ODT is not
    # made into a second PDF/A beside the one its Word source already has.
    with session_scope(ctx.sessions) as s:
        again = migrations.dry_run(s, load_policy(None), aip_ids=[aip_id])
    assert again["files"] == 0, again

    # Version 1 on tape: the same bytes.
    assert tree(recover(ctx, aip_id, 1, dest_dir=tmp_path / "v1-after")) == tree(v1)

    # Version 2 whole: its METS is complete and says what was proven.
    v2 = recover(ctx, aip_id, 2, dest_dir=tmp_path / "v2")
    root = read_mets(v2 / "data" / "METS.xml")
    assert [(r.name, r.version) for r in root.representations] == [("rep1", 1), ("rep2", 2)]
    # The version's own chained event is in its PREMIS on tape, the same event by id.
    premis = (v2 / "data" / "metadata" / "preservation" / "premis.xml").read_text()
    assert event.uuid in premis and "<eventType>migration</eventType>" in premis
    rep2_mets = v2 / "data" / "representations" / "rep2" / "METS.xml"
    validate_mets(rep2_mets)
    rep2 = read_mets(rep2_mets)
    assert len(rep2.files) == 10
    held = {f.path: f.held_in for f in rep2.files}
    assert held["representations/rep1/data/notes/café.txt"] == 1
    assert held["representations/rep2/data/audio/tone-440hz.flac"] is None
    flac = next(f for f in rep2.files if f.path.endswith(".flac"))
    assert flac.derived_from and flac.derived_from.startswith(f"../../../../{aip_id}.v1/")
    migration_events = [e for e in rep2.events if e.type == "migration"]
    assert len(migration_events) == 6 and all(e.outcome == "success" for e in migration_events)
    for e in migration_events:
        roles = {o.role for o in e.objects}
        assert roles == {"source", "outcome"}, e
        assert "PASS" in (e.outcome_detail or "")
    agents = {a.name: a.version for a in rep2.package.agents}
    assert agents.get("ffmpeg") and agents.get("libreoffice") and agents.get("ghostscript")

    # recover --files: version 1 is the originals, version 2 the current representation.
    files_v1 = tmp_path / "files-v1"
    extract_current_files(v1, files_v1)
    assert tree(files_v1) == tree(SAMPLE / "data")
    files_v2 = tmp_path / "files-v2"
    extract_current_files(v2, files_v2)
    assert set(tree(files_v2)) == {name.removeprefix("data/") for name in after}
    assert tree(files_v2)["notes/café.txt"] == tree(SAMPLE / "data")["notes/café.txt"]


def test_a_lossless_film_keeps_every_frame(ctx: Context, tmp_path: Path) -> None:
    aip_id = ingest_bag(ctx, film_bag(tmp_path))
    view = migrate(ctx, [aip_id])
    [item] = view.items
    assert item.state == "committed", item
    [f] = [f for f in item.files if f.path.endswith(".avi")]
    # AAC in MPEG-4 holds sound alone: it goes the way of lossy sound, to WAV.
    [aac] = [f for f in item.files if f.path.endswith(".m4a")]
    assert (aac.action, aac.state) == ("audio-to-wav", "migrated"), aac
    assert {c["name"] for c in aac.checks or []} >= {"duration", "sample rate", "channels"}
    checks = {c["name"]: c for c in f.checks}
    frame_checks = [c for name, c in checks.items() if "frame" in name.lower()]
    assert frame_checks and all(c["passed"] for c in frame_checks), checks
    assert any("md5" in name.lower() for name in checks), checks
    assert any("mediaconch" in name.lower() for name in checks), checks
    [out] = [r for name, r in current(ctx, aip_id).items() if name.endswith(".mkv")]
    assert out.puid == "fmt/569"


def _policy_with_a_wrong_target(tmp_path: Path, mode: str) -> Path:
    """The default policy, but PNGs are said to become JPEG: their outputs must be refused."""
    document = json.loads(default_policy_path().read_text())
    document["mode"] = mode
    [tiff] = [a for a in document["actions"] if a["id"] == "image-to-tiff"]
    document["actions"].append(tiff | {"id": "png-said-to-be-jpeg", "target_puid": "fmt/43"})
    png = {"fmt/11", "fmt/12", "fmt/13", "fmt/935"}
    for rule in document["rules"]:
        rule["puids"] = [p for p in rule["puids"] if p not in png]
    document["rules"].append(
        {"name": "PNG, wrongly", "puids": sorted(png), "preservation": ["png-said-to-be-jpeg"]}
    )
    path = tmp_path / f"policy-{mode}.json"
    path.write_text(json.dumps(document))
    return path


def _no_docx(where: Path) -> Path:
    """The sample collection without its Word document (LibreOffice is slow to start)."""
    bag = where / "sample"
    shutil.copytree(SAMPLE, bag)
    (bag / "data" / "documents" / "letter to donor.docx").unlink()
    for name in ("tagmanifest-sha256.txt", "tagmanifest-sha512.txt", "manifest-sha512.txt"):
        (bag / name).unlink()
    manifest = bag / "manifest-sha256.txt"
    manifest.write_text(
        "".join(line + "\n" for line in manifest.read_text().splitlines() if "letter" not in line)
    )
    (bag / "bag-info.txt").write_text(
        "".join(
            line + "\n"
            for line in (bag / "bag-info.txt").read_text().splitlines()
            if not line.startswith("Payload-Oxum")
        )
    )
    return bag


def test_all_or_nothing_keeps_the_previous_version_and_best_effort_keeps_the_rest(
    ctx: Context, tmp_path: Path
) -> None:
    aip_id = ingest_bag(ctx, _no_docx(tmp_path))

    view = migrate(ctx, [aip_id], _policy_with_a_wrong_target(tmp_path, "all-or-nothing"))
    [item] = view.items
    assert (item.state, item.version) == ("failed", None), item
    assert "all-or-nothing" in (item.error or "")
    [png] = [f for f in item.files if f.path.endswith(".png")]
    assert png.state == "failed"
    # The others passed and were not kept: the result says so, not "migrated".
    assert {f.state for f in item.files if f is not png} == {"discarded"}, item.files
    assert view.files_migrated == 0
    assert any(c["name"] == "identification" and not c["passed"] for c in png.checks or [])
    with session_scope(ctx.sessions) as s:
        assert len(s.get_one(AIP, aip_id).versions) == 1
        [refused] = [
            e
            for e in s.scalars(select(PremisEvent).where(PremisEvent.aip_id == aip_id))
            if e.type == "migration"
        ]
        assert refused.outcome == "failure" and "circle.png" in refused.outcome_detail
    assert all(f.superseded_in is None for f in current(ctx, aip_id).values())

    view = migrate(ctx, [aip_id], _policy_with_a_wrong_target(tmp_path, "best-effort"))
    [item] = view.items
    assert (item.state, item.version, item.files_failed) == ("committed", 2, 1), item
    names = set(current(ctx, aip_id))
    assert "data/images/drawings/circle.png" in names  # refused: the source stays current
    assert "data/images/photos/sunset.tif" in names
    v2 = recover(ctx, aip_id, 2, dest_dir=tmp_path / "v2")
    rep2 = read_mets(v2 / "data" / "representations" / "rep2" / "METS.xml")
    failed = [e for e in rep2.events if e.type == "migration" and e.outcome == "failure"]
    assert len(failed) == 1 and "identification" in (failed[0].outcome_detail or "")
    assert "representations/rep1/data/images/drawings/circle.png" in {f.path for f in rep2.files}


STEPS = [
    "migrate-plan",
    "migrate-recall",
    "migrate-convert",
    "migrate-verify",
    "version-package",
    "migrate-package",
    "store",
    "version-commit",
]


def _cli(settings: Settings, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "preservation.cli", *args],
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "PRESERVATION_HOME": str(settings.home),
            "PRESERVATION_DATABASE_URL": settings.database_url or "",
            **env,
        },
        cwd=REPO,
        start_new_session=True,  # the failpoint kills its whole process group
        timeout=600,
    )


@pytest.mark.parametrize("step", STEPS)
def test_a_migration_killed_at_any_step_leaves_version_1_or_the_whole_version_2(
    ctx: Context, settings: Settings, tmp_path: Path, step: str
) -> None:
    aip_id = ingest_bag(ctx, _no_docx(tmp_path))
    release_drives(ctx)  # the CLI below is another process: it mounts the cartridges itself
    killed = _cli(
        settings,
        "migrate",
        aip_id,
        PRESERVATION_FAILPOINTS=step,
        PRESERVATION_FAILPOINT_DIR=str(tmp_path),
    )
    assert killed.returncode == -9, (killed.returncode, killed.stderr[-2000:])

    def state() -> tuple[int, int]:
        """(the newest committed version, how many current files are outputs)."""
        with session_scope(ctx.sessions) as s:
            committed = [
                v.number
                for v in s.scalars(select(AIPVersion).where(AIPVersion.aip_id == aip_id))
                if v.committed_at is not None
            ]
        files = current(ctx, aip_id)
        return max(committed), sum(1 for f in files.values() if f.derived_from is not None)

    # Committed with its files current (one transaction), or not committed at all.
    assert state() == ((2, 4) if step == "version-commit" else (1, 0)), state()
    assert tree(recover(ctx, aip_id, 1, dest_dir=tmp_path / "v1")) == tree(
        recover(ctx, aip_id, 1, dest_dir=tmp_path / "v1-again")
    )

    release_drives(ctx)
    with session_scope(ctx.sessions) as s:
        [(migration_id, interrupted)] = s.execute(select(Migration.id, Migration.state)).all()
    assert interrupted == ("done" if step == "version-commit" else "running")
    again = _cli(
        settings,
        "migrate",
        "--resume",
        migration_id,
        "--json",
        PRESERVATION_FAILPOINT_DIR=str(tmp_path),
    )
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert json.loads(again.stdout)["state"] == "done"
    assert state() == (2, 4), state()
    # A new request finds nothing left to do: no third version.
    release_drives(ctx)
    nothing = _cli(settings, "migrate", aip_id, "--json")
    assert nothing.returncode == 0, nothing.stderr[-2000:]
    assert [i["state"] for i in json.loads(nothing.stdout)["items"]] == ["unchanged"]
    assert state() == (2, 4)
    # Nothing a killed run built is left behind in staging.
    leftovers = [p.name for p in (settings.staging_dir / "versions").glob(".*")]
    assert leftovers == [], leftovers
    release_drives(ctx)
    for number in (1, 2):
        shown = _cli(
            settings,
            "recover",
            aip_id,
            "--version",
            str(number),
            "--to",
            str(tmp_path / "cli"),
            "--files",
            "--json",
        )
        assert shown.returncode == 0, shown.stdout + shown.stderr[-2000:]
    files_v1 = tmp_path / "cli" / f"{aip_id}.v1.files"
    assert json.loads(shown.stdout)["files"] == str(tmp_path / "cli" / f"{aip_id}.v2.files")
    assert tree(files_v1) == tree(tmp_path / "sample" / "data")  # the originals, byte for byte
    files_v2 = tree(tmp_path / "cli" / f"{aip_id}.v2.files")
    assert len(files_v2) == 8 and "audio/tone-440hz.flac" in files_v2
    assert files_v2["notes/café.txt"] == tree(files_v1)["notes/café.txt"]


def test_curators_start_a_migration_through_the_api_and_follow_it_file_by_file(
    ctx: Context, tmp_path: Path
) -> None:
    import time

    from fastapi.testclient import TestClient

    from preservation.api.app import create_app
    from tests.api.conftest import Tokens

    aip_id = ingest_bag(ctx, _no_docx(tmp_path))
    release_drives(ctx)
    tokens = Tokens(ctx)
    with TestClient(create_app(ctx=ctx), raise_server_exceptions=False) as client:
        reader = tokens.headers("consumer", "museum", "reader")
        curator = tokens.headers("curator", "museum", "jane")
        body = {"aip_ids": [aip_id]}
        r = client.post("/api/v1/migrations", json=body, headers=reader)
        assert r.status_code == 403, r.text
        assert r.headers["content-type"].startswith("application/problem+json")

        r = client.post("/api/v1/migrations", json=body | {"dry_run": True}, headers=curator)
        assert r.status_code == 200, r.text
        assert r.json()["files"] == 4
        with session_scope(ctx.sessions) as s:
            assert len(s.get_one(AIP, aip_id).versions) == 1

        r = client.post(
            "/api/v1/migrations", json={"aip_ids": [aip_id], "puid": "fmt/11"}, headers=curator
        )
        assert r.status_code == 400 and r.json()["rule"] == "selection", r.text

        r = client.post("/api/v1/migrations", json=body, headers=curator)
        assert r.status_code == 202, r.text
        location = r.headers["location"]
        seen_states = set()
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            view = client.get(location, headers=reader).json()
            seen_states.add(view["state"])
            if view["state"] in ("done", "failed"):
                break
            time.sleep(0.2)
        assert view["state"] == "done", view
        [item] = view["items"]
        assert (item["state"], item["version"]) == ("committed", 2)
        assert {f["state"] for f in item["files"]} == {"migrated"}
        assert all(f["tool_version"] and f["checks"] for f in item["files"])
        assert view["requested_by"].startswith("jane")
        listed = client.get("/api/v1/migrations", headers=reader).json()
        assert [m["migration_id"] for m in listed] == [view["migration_id"]]
        r = client.get(f"/api/v1/aips/{aip_id}/versions", headers=reader)
        assert [v["reason"] for v in r.json()] == ["ingest", "migration"]
