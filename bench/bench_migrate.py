"""Format migration through ``preservation migrate``, against each tool run alone.

The issue's figure: per tool family, files per second through ``preservation
migrate`` against running the same tool alone, with the same arguments, on
the same files; our overhead (verification included, and reported apart) at
most 15 %. A migration is much more than the conversion (recall from tape,
verification, a new version packaged, written to both sites and read back),
so the ratio says what all of that costs on top of the tool a curator would
otherwise have run by hand.

Per family (images, audio, video, pdf, office) a bag of generated sources is
ingested (``run_ingest``, as ``preservation ingest`` runs it; untimed) into a
fresh embedded data root, the plan is read as ``preservation migrate
--dry-run`` reads it (untimed), and then:

* ``baseline``: every (file, action) of that plan run as a person would run it,
  ``--workers`` at a time (``Settings().migration_workers``, as ours), and once
  more one command after another (``sequential``). What "the tool alone" is
  per tool is in ``BASELINES`` and the README: for ffmpeg and Ghostscript the
  argv of ``command_for`` per file; for LibreOffice plain ``soffice`` on the
  same batches ours makes; for Pillow the same conversion function called in
  this process, since a Python start per file would flatter us.
* ``ours``: ``preservation migrate AIP --json`` as a subprocess, timed whole.
  Its steps are seen by polling the item's ``step`` in the catalogue (a
  read-only SQLite connection, every 50 ms), and the per-file tool and
  verification seconds come from its JSON; the new version's tar size from
  ``aip_versions``.

End to end: the sample collection (examples/bags/sample-collection) and the
image set (the images family's run), seconds and tar sizes.

Prints one JSON document on stdout, progress on stderr; asserts no timing.

    python bench/bench_migrate.py                     # full size (about 10 minutes)
    python bench/bench_migrate.py --quick             # a few small files per family
    python bench/bench_migrate.py --families audio,pdf
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import queue
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SAMPLE = ROOT / "examples" / "bags" / "sample-collection"
FAMILIES = ("images", "audio", "video", "pdf", "office")
TENANT = "bench"
TARGET_OVERHEAD = 0.15
POLL_SECONDS = 0.05
WORDS = (
    "archive preservation format migration fixity provenance tape catalogue record object "
    "event agent rights version representation bitstream checksum curator reader access "
    "ledger minutes survey parish estate letter photograph map deed register"
).split()

BASELINES = {
    "pillow": (
        "the same conversion function the pillow tool calls (tools.pillow_convert), in this "
        "process, on a pool of --workers threads; no process per file, which would add a "
        "Python start to every file and flatter us"
    ),
    "ffmpeg": (
        "the argv of tools.command_for(action, job) per file (ffmpeg with the policy's "
        "arguments), --workers processes at a time"
    ),
    "ghostscript": (
        "the argv of tools.command_for(action, job) per file (gs -dSAFER -dBATCH -dNOPAUSE "
        "with the policy's arguments), --workers processes at a time; ours also rewrites "
        "each PDF/A with qpdf to put its XMP first, which the baseline does not"
    ),
    "libreoffice": (
        "plain soffice --headless --convert-to with the action's filter on the same batches "
        "tools.py makes (ceil(files / workers) documents per soffice, at most "
        "LIBREOFFICE_BATCH), --workers soffice at a time, each slot with its own fresh "
        "profile as ours; one run per action, as ours; ours also rewrites PDF outputs "
        "with qpdf (XMP first)"
    ),
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Size:
    """How many sources a family gets, and how big each one is."""

    count: int
    detail: dict[str, Any]


def sizes(quick: bool) -> dict[str, Size]:
    if quick:
        return {
            "images": Size(4, {"width": 400, "height": 300}),
            "audio": Size(2, {"seconds": 3}),
            "video": Size(1, {"width": 320, "height": 180, "seconds": 2}),
            "pdf": Size(2, {"pages": 3}),
            "office": Size(1, {"sections": 3}),
        }
    return {
        "images": Size(200, {"width": 2000, "height": 1500}),
        "audio": Size(20, {"seconds": 60}),
        "video": Size(4, {"width": 640, "height": 360, "seconds": 10}),
        "pdf": Size(20, {"pages": 20}),
        "office": Size(10, {"sections": 12}),
    }


# --- sources --------------------------------------------------------------------


def _quiet(argv: Sequence[str]) -> None:
    done = subprocess.run(list(argv), capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({done.returncode}): {done.stderr[-1500:]}")


def _two_at_a_time(fn: Callable[[int], None], n: int) -> None:
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(fn, range(n)))


def make_images(folder: Path, size: Size, seed: int) -> None:
    """Photo-like JPEGs: smooth gradients and blobs under fine grain, so JPEG has work to do."""
    from PIL import Image, ImageChops

    w, h = size.detail["width"], size.detail["height"]
    rng = random.Random(seed)
    gx = Image.linear_gradient("L").resize((w, h))
    gy = Image.linear_gradient("L").transpose(Image.Transpose.ROTATE_90).resize((w, h))
    grain = Image.frombytes("L", (w, h), rng.randbytes(w * h)).point(lambda v: v // 10)
    folder.mkdir(parents=True)
    for i in range(size.count):
        bw, bh = max(2, w // 16), max(2, h // 16)
        blobs = [
            Image.frombytes("L", (bw, bh), rng.randbytes(bw * bh)).resize(
                (w, h), Image.Resampling.BICUBIC
            )
            for _ in range(2)
        ]
        shifted = ImageChops.offset(grain, rng.randrange(w), rng.randrange(h))
        red = ImageChops.add(Image.blend(gx, blobs[0], 0.4), shifted, 1.0, -12)
        green = ImageChops.add(Image.blend(gy, blobs[1], 0.5), shifted, 1.0, -12)
        blue = Image.blend(ImageChops.invert(gx), blobs[0], 0.35)
        sub = folder / f"roll-{i // 50:02d}"
        sub.mkdir(exist_ok=True)
        Image.merge("RGB", (red, green, blue)).save(sub / f"photo-{i:04d}.jpg", quality=90)


def make_audio(folder: Path, size: Size, seed: int) -> None:
    """44.1 kHz 16-bit stereo: a tone under pink noise, so FLAC cannot shrink it to nothing."""
    folder.mkdir(parents=True)
    seconds = size.detail["seconds"]

    def one(i: int) -> None:
        _quiet(
            [
                "ffmpeg",
                "-v",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                f"sine=frequency={220 + 37 * i}:sample_rate=44100:duration={seconds}",
                "-f",
                "lavfi",
                "-i",
                f"anoisesrc=color=pink:amplitude=0.2:sample_rate=44100:duration={seconds}"
                f":seed={seed * 1000 + i}",
                "-filter_complex",
                "[0:a][1:a]amerge=inputs=2,aformat=channel_layouts=stereo,volume=0.8[a]",
                "-map",
                "[a]",
                "-c:a",
                "pcm_s16le",
                str(folder / f"interview-{i:03d}.wav"),
            ]
        )

    _two_at_a_time(one, size.count)


def make_video(folder: Path, size: Size, seed: int) -> None:
    """Lossless clips (Huffyuv, PCM in AVI), each tinted apart so no two are the same bytes."""
    folder.mkdir(parents=True)
    d = size.detail

    def one(i: int) -> None:
        _quiet(
            [
                "ffmpeg",
                "-v",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                f"testsrc2=size={d['width']}x{d['height']}:rate=25:duration={d['seconds']}",
                "-f",
                "lavfi",
                "-i",
                f"sine=frequency={330 + 50 * i}:sample_rate=48000:duration={d['seconds']}",
                "-vf",
                f"hue=h={(seed * 7 + i * 40) % 360}",
                "-c:v",
                "huffyuv",
                "-pix_fmt",
                "yuv422p",
                "-c:a",
                "pcm_s16le",
                "-ac",
                "2",
                str(folder / f"reel-{i:02d}.avi"),
            ]
        )

    _two_at_a_time(one, size.count)


def _page(rng: random.Random, number: int, picture: Any) -> str:
    width, height = picture.size
    lines = [
        f"/Helvetica-Bold findfont 18 scalefont setfont 72 750 moveto (Survey, page {number}) show",
        "/Times-Roman findfont 11 scalefont setfont",
    ]
    for row in range(26):
        text = " ".join(rng.choice(WORDS) for _ in range(12))
        lines.append(f"72 {725 - 14 * row} moveto ({text}) show")
    lines += [
        f"gsave 126 60 translate {width * 1.5:g} {height * 1.5:g} scale",
        f"{width} {height} 8 [{width} 0 0 -{height} 0 {height}] "
        "currentfile /ASCIIHexDecode filter false 3 colorimage",
        picture.tobytes().hex() + ">",
        "grestore showpage",
    ]
    return "\n".join(lines)


def make_pdfs(folder: Path, size: Size, seed: int) -> None:
    """Multi-page PDFs with text and a picture per page, written by Ghostscript from PostScript."""
    from PIL import Image

    folder.mkdir(parents=True)
    pages = size.detail["pages"]

    def one(i: int) -> None:
        rng = random.Random(seed * 1000 + i)
        parts = ["%!PS-Adobe-3.0", "<< /PageSize [612 792] >> setpagedevice"]
        for number in range(1, pages + 1):
            coarse = Image.frombytes("RGB", (40, 30), rng.randbytes(40 * 30 * 3))
            picture = coarse.resize((320, 240), Image.Resampling.BICUBIC)
            parts.append(_page(rng, number, picture))
        ps = folder / f"survey-{i:03d}.ps"
        ps.write_text("\n".join(parts) + "\n", encoding="ascii")
        try:
            _quiet(
                [
                    "gs",
                    "-q",
                    "-dSAFER",
                    "-dBATCH",
                    "-dNOPAUSE",
                    "-sDEVICE=pdfwrite",
                    f"-sOutputFile={folder / f'survey-{i:03d}.pdf'}",
                    str(ps),
                ]
            )
        finally:
            ps.unlink()

    _two_at_a_time(one, size.count)


def make_office(folder: Path, size: Size, seed: int) -> None:
    """Word documents of a few pages (headings, paragraphs, tables), made by LibreOffice."""
    rng = random.Random(seed)
    html = folder.parent / "html"
    html.mkdir(parents=True)
    folder.mkdir(parents=True)
    sources = []
    for i in range(size.count):
        parts = [f"<html><head><meta charset='utf-8'><title>Minutes {i}</title></head><body>"]
        for section in range(size.detail["sections"]):
            parts.append(f"<h1>Meeting {section + 1}</h1>")
            for _ in range(6):
                parts.append("<p>" + " ".join(rng.choice(WORDS) for _ in range(60)) + ".</p>")
            rows = "".join(
                "<tr>" + "".join(f"<td>{rng.randrange(10_000)}</td>" for _ in range(5)) + "</tr>"
                for _ in range(6)
            )
            parts.append(f"<table border='1'>{rows}</table>")
        parts.append("</body></html>")
        path = html / f"minutes-{i:03d}.html"
        path.write_text("\n".join(parts), encoding="utf-8")
        sources.append(str(path))
    profile = (folder.parent / "soffice-profile").absolute()
    try:
        _quiet(
            [
                "soffice",
                "--headless",
                "--norestore",
                f"-env:UserInstallation={profile.as_uri()}",
                "--convert-to",
                "docx:MS Word 2007 XML",
                "--outdir",
                str(folder),
                *sources,
            ]
        )
    finally:
        shutil.rmtree(html, ignore_errors=True)
        shutil.rmtree(profile, ignore_errors=True)
    made = sorted(folder.glob("*.docx"))
    if len(made) != size.count:
        raise RuntimeError(f"soffice made {len(made)} of {size.count} documents")


MAKERS: dict[str, Callable[[Path, Size, int], None]] = {
    "images": make_images,
    "audio": make_audio,
    "video": make_video,
    "pdf": make_pdfs,
    "office": make_office,
}


def make_bag(family: str, where: Path, size: Size, seed: int) -> Path:
    import bagit  # type: ignore[import-untyped]

    bag = where / "bag"
    MAKERS[family](bag / family, size, seed)
    bagit.make_bag(
        os.fspath(bag),
        bag_info={"Source-Organization": "Benchmark", "External-Identifier": f"BENCH-{family}"},
        checksums=["sha256", "sha512"],
    )
    return bag


# --- the pipeline, as a curator runs it ---------------------------------------------


def _cli() -> list[str]:
    exe = shutil.which("preservation") or str(Path(sys.executable).parent / "preservation")
    if Path(exe).exists():
        return [exe]
    return [sys.executable, "-c", "from preservation.cli import app; app()"]


def _env(home: Path, workers: int) -> dict[str, str]:
    """The embedded default under ``home``, whatever the caller's shell points at.

    Scanning is off: ingest is not what is measured, and a migration scans nothing.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRESERVATION_")}
    env.update(
        PRESERVATION_HOME=str(home),
        PRESERVATION_VIRUS_SCAN="false",
        PRESERVATION_MIGRATION_WORKERS=str(workers),
    )
    return env


def _settings(home: Path) -> Any:
    """The embedded default under ``home``, as ``_env`` gives the CLI processes."""
    from preservation.config import Settings

    return Settings(home=home, database_url=None, broker_url=None, virus_scan=False)


def ingest(bag: Path, home: Path) -> str:
    """``run_ingest``, what ``preservation ingest`` calls, here: one interpreter start fewer."""
    from preservation.context import open_context
    from preservation.ingest import run_ingest

    ctx = open_context(_settings(home))
    try:
        result = run_ingest(ctx, bag, tenant=TENANT)
    finally:
        ctx.close()  # the cartridges are unmounted: the CLI's migration mounts them
    if result.state != "committed" or not result.aip_id:
        raise RuntimeError(f"ingest of {bag} ended {result.state}: {result.problems[:3]}")
    return str(result.aip_id)


def plan(aip_id: str, home: Path) -> dict[str, Any]:
    """What ``preservation migrate --dry-run --json`` prints, asked in this process.

    The same call the CLI makes, without a second interpreter start per family.
    """
    from preservation.catalog import session_scope
    from preservation.context import open_context
    from preservation.migrate import service

    policy, _ = service.read_policy(None)
    ctx = open_context(_settings(home))
    try:
        with session_scope(ctx.sessions) as s:
            return service.dry_run(s, policy, aip_ids=[aip_id])
    finally:
        ctx.close()


class StepWatch:
    """When the item's ``step`` changes, seen from outside the process that changes it.

    The migration records its step on the item as it goes (so the API shows
    progress); reading it from here costs the migrating process nothing. A
    step shorter than the polling interval can go unseen: its time then counts
    in the step before it.
    """

    def __init__(self, database: Path) -> None:
        self.database = database
        self.seen: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="step-watch", daemon=True)
        self.started = 0.0

    def __enter__(self) -> StepWatch:
        self.started = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _poll(self) -> None:
        connection: sqlite3.Connection | None = None
        try:
            while not self._stop.is_set():
                try:
                    if connection is None:
                        connection = sqlite3.connect(
                            f"{self.database.as_uri()}?mode=ro", uri=True, timeout=0.2
                        )
                    row = connection.execute(
                        "SELECT step, state FROM migration_items ORDER BY id DESC LIMIT 1"
                    ).fetchone()
                except sqlite3.Error:
                    row = None
                if row is not None:
                    label = row[0] or row[1]
                    if not self.seen or self.seen[-1][1] != label:
                        self.seen.append((time.perf_counter() - self.started, label))
                self._stop.wait(POLL_SECONDS)
        finally:
            if connection is not None:
                connection.close()

    def steps(self, wall: float) -> dict[str, float]:
        """Seconds per step: ``start`` until the request is recorded, ``exit`` after it ends."""
        out: dict[str, float] = {}
        marks = [(0.0, "start"), *self.seen, (wall, "")]
        for (at, label), (until, _) in zip(marks, marks[1:], strict=False):
            if label in ("committed", "failed", "unchanged"):
                label = "exit"
            out[label] = round(out.get(label, 0.0) + until - at, 3)
        return out


def _catalogue(home: Path) -> Path:
    return home / "catalog.sqlite"


def tar_sizes(home: Path, aip_id: str) -> dict[int, int | None]:
    with sqlite3.connect(f"{_catalogue(home).as_uri()}?mode=ro", uri=True) as db:
        rows = db.execute(
            "SELECT number, tar_size FROM aip_versions WHERE aip_id = ? ORDER BY number", (aip_id,)
        ).fetchall()
    return {int(number): size for number, size in rows}


def ours(aip_id: str, home: Path, workers: int, sources: int) -> dict[str, Any]:
    """``preservation migrate AIP --json``, timed whole, with what it says about each file."""
    argv = [*_cli(), "migrate", aip_id, "--json"]
    os.sync()
    with StepWatch(_catalogue(home)) as watch:
        started = time.perf_counter()
        done = subprocess.run(
            argv, capture_output=True, text=True, env=_env(home, workers), cwd=ROOT
        )
        wall = time.perf_counter() - started
    out: dict[str, Any] = {
        "command": "preservation migrate AIP_ID --json",
        "exit_code": done.returncode,
        "seconds": round(wall, 3),
        "files_per_second": round(sources / wall, 3),
        "steps_seconds": watch.steps(wall),
    }
    try:
        view = json.loads(done.stdout)
    except json.JSONDecodeError:
        out["error"] = (done.stdout + done.stderr)[-3000:]
        return out
    files = [f for item in view.get("items", []) for f in item.get("files", [])]
    tool_s = sum(f.get("seconds_tool") or 0.0 for f in files)
    verify_s = sum(f.get("seconds_verify") or 0.0 for f in files)
    out.update(
        state=view.get("state"),
        outputs=view.get("files_total"),
        outputs_migrated=view.get("files_migrated"),
        outputs_failed=view.get("files_failed"),
        outputs_per_second=round((view.get("files_total") or 0) / wall, 3),
        tool_seconds_sum=round(tool_s, 3),
        verification_seconds_sum=round(verify_s, 3),
        tools=sorted({f["tool_version"] for f in files if f.get("tool_version")}),
    )
    failed = [f for f in files if f.get("state") != "migrated"]
    if failed:
        out["failures"] = [
            {"path": f["path"], "action": f["action"], "error": f.get("error")} for f in failed[:5]
        ]
    sizes = tar_sizes(home, aip_id)
    out["original_version_tar_bytes"] = sizes.get(1)
    out["new_version_tar_bytes"] = sizes.get(2)
    return out


# --- the tools alone -----------------------------------------------------------------


@dataclass(frozen=True)
class Group:
    """One action and its jobs, in the order ours runs them (one tool run per action)."""

    action: Any
    jobs: list[Any]


def groups(report: dict[str, Any], bag: Path, out: Path) -> list[Group]:
    """The dry run's (file, action) pairs, grouped by action in order of first appearance."""
    from preservation.migrate.policy import load_policy
    from preservation.migrate.tools import Job

    policy = load_policy()
    by_action: dict[str, Group] = {}
    for aip in report["aips"]:
        for f in aip["files"]:
            source = bag / f["path"]
            for a in f["actions"]:
                action = policy.action(a["id"])
                group = by_action.setdefault(action.id, Group(action, []))
                key = len(group.jobs)
                folder = out / action.id / str(key)
                group.jobs.append(Job(key, source, folder / (source.stem + action.extension)))
    return list(by_action.values())


def _command(argv: Sequence[str]) -> bool:
    done = subprocess.run(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return done.returncode == 0


def _soffice_batches(group: Group, workers: int, root: Path) -> list[list[str]]:
    """tools.py's split into batches, each as the plain soffice command line that converts it.

    ``command_for`` gives the one-file argv; a batch is that argv with the other
    sources added, so filter and options are the same. Each output folder is
    the batch's own, as LibreOffice names outputs after their sources.
    """
    from preservation.migrate.tools import LIBREOFFICE_BATCH, Job, command_for

    jobs = group.jobs
    size = max(1, min(LIBREOFFICE_BATCH, math.ceil(len(jobs) / max(1, workers))))
    commands = []
    for number, start in enumerate(range(0, len(jobs), size)):
        batch = jobs[start : start + size]
        outdir = root / f"batch-{number}"
        outdir.mkdir(parents=True)
        first = batch[0]
        argv = command_for(group.action, Job(first.key, first.source, outdir / first.output.name))
        argv += [str(Path(j.source).absolute()) for j in batch[1:]]
        commands.append(argv)
    return commands


def _output_in(root: Path, job: Any) -> Path:
    output = root / str(job.key) / Path(job.output).name
    output.parent.mkdir(parents=True, exist_ok=True)
    return output


def run_group(group: Group, workers: int, root: Path) -> dict[str, Any]:
    """The tool alone on one action's jobs, ``workers`` at a time; outputs go under ``root``."""
    tool = group.action.tool
    if tool == "pillow":
        from preservation.migrate.tools import _pillow_options, pillow_convert

        options = _pillow_options(group.action.arguments)

        def convert(job: Any) -> bool:
            output = _output_in(root, job)
            pillow_convert(options, Path(job.source), output)
            return output.stat().st_size > 0

        started = time.perf_counter()
        with ThreadPoolExecutor(workers) as pool:
            ok = list(pool.map(convert, group.jobs))
        return {
            "seconds": time.perf_counter() - started,
            "processes": 0,
            "failed": ok.count(False),
        }
    if tool == "libreoffice":
        commands = _soffice_batches(group, workers, root)
        profiles: queue.SimpleQueue[Path] = queue.SimpleQueue()
        for slot in range(min(workers, len(commands))):
            profiles.put(root / f"profile-{slot}")

        def soffice(argv: list[str]) -> bool:
            # A fresh profile per slot, as ours: the first start in it builds it.
            profile = profiles.get()
            try:
                env = f"-env:UserInstallation={profile.as_uri()}"
                return _command(
                    [env if a.startswith("-env:UserInstallation=") else a for a in argv]
                )
            finally:
                profiles.put(profile)

        started = time.perf_counter()
        with ThreadPoolExecutor(workers) as pool:
            ok = list(pool.map(soffice, commands))
        seconds = time.perf_counter() - started
        made = sum(1 for _ in root.glob(f"batch-*/*{group.action.extension}"))
        return {
            "seconds": seconds,
            "processes": len(commands),
            "failed": ok.count(False) + (len(group.jobs) - made),
        }
    from preservation.migrate.tools import Job, command_for

    commands = []
    for job in group.jobs:
        commands.append(command_for(group.action, Job(job.key, job.source, _output_in(root, job))))
    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        ok = list(pool.map(_command, commands))
    return {
        "seconds": time.perf_counter() - started,
        "processes": len(commands),
        "failed": ok.count(False),
    }


def baseline(groups_: list[Group], workers: int, work: Path, sources: int) -> dict[str, Any]:
    """Every action's jobs, one action after another as ours, in parallel and then sequentially."""
    out: dict[str, Any] = {
        "what": {g.action.tool: BASELINES[g.action.tool] for g in groups_},
        "workers": workers,
        "actions": [g.action.id for g in groups_],
    }
    for mode, n in (("parallel", workers), ("sequential", 1)):
        seconds, processes, failed = 0.0, 0, 0
        per_action = {}
        for g in groups_:
            root = work / f"baseline-{mode}" / g.action.id
            root.mkdir(parents=True)
            os.sync()  # the previous contender's dirty pages are not this one's to write
            r = run_group(g, n, root)
            seconds += r["seconds"]
            processes += r["processes"]
            failed += r["failed"]
            per_action[g.action.id] = round(r["seconds"], 3)
        shutil.rmtree(work / f"baseline-{mode}", ignore_errors=True)
        out[mode] = {
            "seconds": round(seconds, 3),
            "files_per_second": round(sources / seconds, 3) if seconds else None,
            "seconds_per_action": per_action,
            "processes": processes,
            "failed": failed,
        }
    return out


# --- one family -------------------------------------------------------------------------


def family(
    name: str, size: Size, work: Path, workers: int, seed: int, *, with_baseline: bool = True
) -> dict[str, Any]:
    where = work / name
    if name in MAKERS:
        log(f"{name}: making {size.count} source(s) {size.detail}")
        bag = make_bag(name, where, size, seed)
    else:
        bag = SAMPLE
    sources = [p for p in (bag / "data").rglob("*") if p.is_file()]
    home = where / "home"
    log(f"{name}: ingest (not timed)")
    aip_id = ingest(bag, home)
    report = plan(aip_id, home)
    result: dict[str, Any] = {
        "files": len(sources),
        "bytes": sum(p.stat().st_size for p in sources),
        "size": size.detail,
        "planned_files": report["files"],
        "planned_outputs": report["outputs"],
        "puids": sorted({f["puid"] for a in report["aips"] for f in a["files"]}),
    }
    if with_baseline:
        log(f"{name}: the tools alone, {workers} at a time, then one at a time")
        result["baseline"] = baseline(
            groups(report, bag, where / "plan"), workers, where, report["files"]
        )
    log(f"{name}: preservation migrate")
    mine = ours(aip_id, home, workers, report["files"])
    result["ours"] = mine
    if "baseline" in result and "error" not in mine:
        base = result["baseline"]["parallel"]["seconds"]
        steps = mine["steps_seconds"]
        verify_wall = steps.get("verify", 0.0)
        result["overhead_ratio"] = round(mine["seconds"] / base - 1, 3)
        result["overhead_ratio_without_verification"] = round(
            (mine["seconds"] - verify_wall) / base - 1, 3
        )
        result["convert_step_over_baseline"] = round(steps.get("convert", 0.0) / base, 3)
        result["meets_target"] = result["overhead_ratio"] <= TARGET_OVERHEAD
    if "error" not in mine:
        result["verification"] = {
            "seconds_sum_over_files": mine["verification_seconds_sum"],
            "share_of_ours_sum_over_workers": round(
                mine["verification_seconds_sum"] / workers / mine["seconds"], 3
            ),
            "verify_step_seconds": mine["steps_seconds"].get("verify"),
            "share_of_ours_verify_step": round(
                mine["steps_seconds"].get("verify", 0.0) / mine["seconds"], 3
            ),
        }
    shutil.rmtree(where, ignore_errors=True)
    return result


def end_to_end(figures: dict[str, Any]) -> dict[str, Any]:
    ours_ = figures["ours"]
    return {
        "files": figures["files"],
        "outputs": ours_.get("outputs"),
        "seconds": ours_["seconds"],
        "exit_code": ours_["exit_code"],
        "state": ours_.get("state"),
        "steps_seconds": ours_["steps_seconds"],
        "original_version_tar_bytes": ours_.get("original_version_tar_bytes"),
        "new_version_tar_bytes": ours_.get("new_version_tar_bytes"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few small files per family")
    parser.add_argument(
        "--families", default=",".join(FAMILIES), help=f"comma-separated, of {', '.join(FAMILIES)}"
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="default: Settings().migration_workers"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=None, help="parent of the scratch folder")
    args = parser.parse_args(argv)
    chosen = [f.strip() for f in args.families.split(",") if f.strip()]
    unknown = sorted(set(chosen) - set(FAMILIES))
    if unknown:
        parser.error(f"unknown families {unknown}; choose from {', '.join(FAMILIES)}")
    if args.workers is None:
        from preservation.config import Settings

        args.workers = Settings().migration_workers
    logging.getLogger("bagit").setLevel(logging.ERROR)
    for program in ("ffmpeg", "gs", "soffice"):
        if shutil.which(program) is None:
            parser.error(f"{program} is not on PATH")

    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-migrate-", dir=args.workdir)).absolute()
    table = sizes(args.quick)
    result: dict[str, Any] = {
        "benchmark": "migrate",
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%MZ"),
        "quick": args.quick,
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "workers": args.workers,
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
        "target_overhead_ratio": TARGET_OVERHEAD,
        "families": {},
    }
    try:
        for name in [f for f in FAMILIES if f in chosen]:
            result["families"][name] = family(name, table[name], work, args.workers, args.seed)
        e2e = {
            "sample_collection": end_to_end(
                family(
                    "sample-collection",
                    Size(9, {}),
                    work,
                    args.workers,
                    args.seed,
                    with_baseline=False,
                )
            )
        }
        images = result["families"].get("images") or family(
            "images", table["images"], work, args.workers, args.seed, with_baseline=False
        )
        e2e["image_set"] = end_to_end(images)
        result["end_to_end"] = e2e
        result["meets_target"] = {
            name: f.get("meets_target") for name, f in result["families"].items()
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
