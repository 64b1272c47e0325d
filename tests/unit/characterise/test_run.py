"""preservation/characterise/run.py: the batch runner, with the real tools on real files.

A hand-written fake (``Slow``, a ``CharacterisationTool`` that sleeps) shows
that the tools run at the same time and checks the runner's bookkeeping;
every other test runs MediaInfo, ExifTool and PyAV for real.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from preservation.characterise import (
    Characterisation,
    ExifTool,
    FFprobe,
    FileToCharacterise,
    FormatEntry,
    MediaInfo,
    Registry,
    ToolBox,
    ToolRun,
    characterise,
    load_registry,
)
from preservation.characterise.tools import CharacterisationTool
from tests.unit.characterise.conftest import SAMPLES, Spawns, require


@pytest.fixture
def staged(samples: dict[str, Path], tmp_path: Path) -> Path:
    """The samples copied into a staging folder laid out as an AIP's representation."""
    require("mediainfo", "exiftool")
    root = tmp_path / "staging" / "data" / "representations"
    for name, path in samples.items():
        target = root / ("media" if name in ("wav", "flac", "mp3", "mkv", "mp4") else "other")
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target / path.name)
    return root


def _files(root: Path) -> list[FileToCharacterise]:
    by_name = {p.name: p for p in root.rglob("*") if p.is_file()}
    return [
        FileToCharacterise(key=name, path=by_name[file_name], puid=puid)
        for name, (file_name, puid) in SAMPLES.items()
    ]


def _copies(source: Path, folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        paths.append(folder / f"{i:02d}{source.suffix}")
        shutil.copyfile(source, paths[-1])
    return paths


def _run(
    files: Sequence[FileToCharacterise], out: Path, tools: ToolBox, **kw: Any
) -> Characterisation:
    return characterise(files, registry=load_registry(), out_dir=out, tools=tools, **kw)


def test_a_mixed_submission(staged: Path, tmp_path: Path, toolbox: ToolBox) -> None:
    files = _files(staged)
    files.append(FileToCharacterise(key="mystery", path=staged / "other" / "notes.txt", puid=None))
    files.append(FileToCharacterise("unlisted", staged / "other" / "notes.txt", "fmt/99999"))
    out = tmp_path / "aip" / "characterisation"
    result = _run(files, out, toolbox, relative_to=staged)

    assert result.tool_errors == {}
    assert set(result.tools) == {"mediainfo", "exiftool", "ffprobe"}
    assert result.tools["exiftool"] == toolbox.get("exiftool").version()
    assert [p.name for p in result.documents] == [
        "exiftool-001.json",
        "ffprobe-001.json",
        "mediainfo-001.json",
    ]
    assert sorted(os.listdir(out)) == sorted(p.name for p in result.documents)
    assert result.kinds["text"] == "text" and result.kinds["mkv"] == "video"
    assert "mystery" not in result.kinds and "unlisted" not in result.kinds
    assert set(result.properties) == set(SAMPLES) - {"text"}
    assert result.properties["png"] == {
        "width": 40,
        "height": 30,
        "bit_depth": 8,
        "colour_space": "RGB",
        "compression": "Deflate",
    }
    assert result.properties["mkv"]["video_codec"] == "FFV1"
    assert result.properties["pdf_two_pages"]["page_count"] == 2
    assert result.properties["wav"]["bit_depth"] == 24


def test_documents_are_compact_utf8_json_with_relative_names_only(
    staged: Path, tmp_path: Path, toolbox: ToolBox
) -> None:
    out = tmp_path / "out"
    result = _run(_files(staged), out, toolbox, relative_to=staged)
    for path in result.documents:
        raw = path.read_bytes()
        document = json.loads(raw.decode("utf-8"))
        assert raw.decode("utf-8") == json.dumps(
            document, ensure_ascii=False, separators=(",", ":")
        )
        assert set(document) == {"tool", "version", "files", "output"}
        assert document["tool"] == path.name.split("-")[0]
        assert document["version"] == result.tools[document["tool"]]
        assert all(not name.startswith("/") for name in document["files"])
        assert str(tmp_path) not in raw.decode("utf-8")  # no staging path anywhere
    mediainfo = json.loads((out / "mediainfo-001.json").read_text(encoding="utf-8"))
    assert mediainfo["files"][0] == "media/tone.wav"
    assert [e["media"]["@ref"] for e in mediainfo["output"]] == mediainfo["files"]
    exiftool = json.loads((out / "exiftool-001.json").read_text(encoding="utf-8"))
    assert [e["SourceFile"] for e in exiftool["output"]] == exiftool["files"]
    assert exiftool["files"][0] == "other/rgb.png"
    ffprobe = json.loads((out / "ffprobe-001.json").read_text(encoding="utf-8"))
    assert [e["format"]["filename"] for e in ffprobe["output"]] == ffprobe["files"]


def test_thirty_files_cost_one_process_per_tool(
    samples: dict[str, Path], tmp_path: Path, spawns: Spawns
) -> None:
    require("mediainfo", "exiftool")
    files = [
        FileToCharacterise(path, path, puid)
        for sample, puid in (("png", "fmt/11"), ("wav", "fmt/143"), ("mkv", "fmt/569"))
        for path in _copies(samples[sample], tmp_path / "in" / sample, 10)
    ]
    with ToolBox() as tools:
        result = _run(files, tmp_path / "out", tools)
    assert result.tool_errors == {} and len(result.properties) == 30
    assert len(spawns.of("exiftool")) == 1  # the one -stay_open process
    batches = [c for c in spawns.of("mediainfo") if "--Output=JSON" in c]
    assert len(batches) == 1 and len(batches[0]) == 2 + 20  # 10 WAV + 10 MKV in one process
    assert len(spawns.calls) == 1 + 2  # exiftool; mediainfo --Version and its batch; PyAV: none


def test_batches_are_numbered_and_exiftool_lives_across_runs(
    samples: dict[str, Path], tmp_path: Path, spawns: Spawns
) -> None:
    require("exiftool")
    pngs = _copies(samples["png"], tmp_path / "in", 10)
    files = [FileToCharacterise(i, p, "fmt/11") for i, p in enumerate(pngs)]
    with ToolBox() as tools:
        first = _run(files, tmp_path / "one", tools, batch_size=4)
        exiftool = tools.get("exiftool")
        assert isinstance(exiftool, ExifTool)
        pid = exiftool.pid
        second = _run(files[:3], tmp_path / "two", tools, batch_size=4)
        assert exiftool.pid == pid and exiftool.starts == 1
    assert [p.name for p in first.documents] == [
        "exiftool-001.json",
        "exiftool-002.json",
        "exiftool-003.json",
    ]
    sizes = [len(json.loads(p.read_text())["files"]) for p in first.documents]
    assert sizes == [4, 4, 2]
    assert [p.name for p in second.documents] == ["exiftool-001.json"]
    assert len(spawns.of("exiftool")) == 1


def test_a_tool_that_is_not_installed_is_an_error_on_its_files_only(
    samples: dict[str, Path], tmp_path: Path
) -> None:
    require("exiftool")
    missing = str(tmp_path / "no-such-mediainfo")
    tools = ToolBox(
        {"mediainfo": lambda: MediaInfo(missing), "exiftool": ExifTool, "ffprobe": FFprobe}
    )
    files = [
        FileToCharacterise("wav", samples["wav"], "fmt/143"),
        FileToCharacterise("mkv", samples["mkv"], "fmt/569"),
        FileToCharacterise("png", samples["png"], "fmt/11"),
    ]
    with tools:
        result = _run(files, tmp_path / "out", tools)
    assert result.tool_errors == {
        "wav": ["mediainfo: not installed"],
        "mkv": ["mediainfo: not installed"],
    }
    assert set(result.tools) == {"exiftool", "ffprobe"}
    assert "wav" not in result.properties
    assert result.properties["mkv"]["video_codec"] == "FFV1"  # ffprobe filled in
    assert result.properties["png"]["width"] == 40
    assert [p.name for p in result.documents] == ["exiftool-001.json", "ffprobe-001.json"]


def test_a_tool_failing_on_a_batch_costs_that_batch_only(
    samples: dict[str, Path], tmp_path: Path
) -> None:
    require("mediainfo")
    wavs = _copies(samples["wav"], tmp_path / "in", 3)
    wavs.append(tmp_path / "in" / "BOOM.wav")
    shutil.copyfile(samples["wav"], wavs[-1])
    script = tmp_path / "mediainfo"
    real = shutil.which("mediainfo")
    script.write_text(
        f'#!/bin/sh\ncase "$*" in *BOOM*) echo broken >&2; exit 3;; esac\nexec {real} "$@"\n',
        encoding="utf-8",
    )
    script.chmod(0o755)
    files = [FileToCharacterise(p.name, p, "fmt/143") for p in wavs]
    with ToolBox({"mediainfo": lambda: MediaInfo(str(script))}) as tools:
        result = _run(files, tmp_path / "out", tools, batch_size=3)
    assert set(result.properties) == {"00.wav", "01.wav", "02.wav"}
    [message] = result.tool_errors["BOOM.wav"]
    assert message.startswith("mediainfo: ") and "broken" in message
    assert [p.name for p in result.documents] == ["mediainfo-001.json"]


def test_awkward_names_reach_the_documents_as_valid_utf8(
    samples: dict[str, Path], tmp_path: Path, toolbox: ToolBox
) -> None:
    require("exiftool", "mediainfo")
    folder = tmp_path / "in"
    folder.mkdir()
    odd = [folder / "new\nline.png", folder / os.fsdecode(b"caf\xe9.wav")]
    shutil.copyfile(samples["png"], odd[0])
    shutil.copyfile(samples["wav"], odd[1])
    files = [
        FileToCharacterise("png", odd[0], "fmt/11"),
        FileToCharacterise("wav", odd[1], "fmt/143"),
    ]
    result = _run(files, tmp_path / "out", toolbox, relative_to=folder)
    assert result.tool_errors == {}
    assert result.properties["png"]["width"] == 40
    assert result.properties["wav"]["sample_rate"] == 48000
    names = {
        json.loads(p.read_bytes().decode("utf-8"))["tool"]: json.loads(p.read_text())["files"]
        for p in result.documents
    }
    assert names == {"exiftool": ["new\nline.png"], "mediainfo": ["caf\\xe9.wav"]}


def test_nothing_to_run(tmp_path: Path, toolbox: ToolBox, samples: dict[str, Path]) -> None:
    files = [
        FileToCharacterise("text", samples["text"], "x-fmt/111"),
        FileToCharacterise("unknown", samples["text"], None),
    ]
    seen: list[tuple[int, int]] = []
    result = _run(files, tmp_path / "out", toolbox, progress=lambda d, t: seen.append((d, t)))
    assert result == Characterisation(kinds={"text": "text"})
    assert seen == [(0, 0)]
    assert not (tmp_path / "out").exists()


class Slow:
    """A tool that takes ``delay`` seconds per batch and says when it ran."""

    def __init__(self, name: str, delay: float, log: list[tuple[str, float, float]]) -> None:
        self.name = name
        self.delay = delay
        self.log = log

    def version(self) -> str:
        return "1.0"

    def close(self) -> None:
        pass

    def run(self, paths: Sequence[Path], *, names: Sequence[str] | None = None) -> ToolRun:
        start = time.monotonic()
        time.sleep(self.delay)
        self.log.append((self.name, start, time.monotonic()))
        records: list[dict[str, Any]] = [{"n": str(n)} for n in names or paths]
        return ToolRun(self.name, "1.0", records, records, {})


def _slow_box(delay: float, log: list[tuple[str, float, float]]) -> ToolBox:
    def make(name: str) -> Callable[[], CharacterisationTool]:
        return lambda: Slow(name, delay, log)

    return ToolBox({name: make(name) for name in ("mediainfo", "exiftool", "ffprobe")})


def test_the_tools_run_at_the_same_time(tmp_path: Path) -> None:
    log: list[tuple[str, float, float]] = []
    files = [
        FileToCharacterise("mkv", tmp_path / "a.mkv", "fmt/569"),  # mediainfo and ffprobe
        FileToCharacterise("png", tmp_path / "a.png", "fmt/11"),  # exiftool
    ]
    started = time.monotonic()
    result = _run(files, tmp_path / "out", _slow_box(0.3, log))
    assert time.monotonic() - started < 0.6  # three tools of 0.3 s each, side by side
    assert sorted(name for name, _, _ in log) == ["exiftool", "ffprobe", "mediainfo"]
    assert max(start for _, start, _ in log) < min(end for _, _, end in log)
    assert result.tools == {"exiftool": "1.0", "ffprobe": "1.0", "mediainfo": "1.0"}


def test_progress_counts_files_per_tool_from_the_calling_thread(tmp_path: Path) -> None:
    log: list[tuple[str, float, float]] = []
    files = [FileToCharacterise(i, tmp_path / f"{i}.mkv", "fmt/569") for i in range(5)]
    seen: list[tuple[int, int, str]] = []
    caller = threading.current_thread().name

    def progress(done: int, total: int) -> None:
        seen.append((done, total, threading.current_thread().name))

    _run(files, tmp_path / "out", _slow_box(0.0, log), batch_size=2, progress=progress)
    assert seen[0] == (0, 10, caller) and seen[-1] == (10, 10, caller)
    assert len(seen) == 1 + 6  # three batches for each of two tools
    done = [d for d, _, _ in seen]
    assert done == sorted(done) and {t for _, _, t in seen} == {caller}


def test_a_bug_in_a_tool_is_raised_not_swallowed(tmp_path: Path) -> None:
    class Broken(Slow):
        def run(self, paths: Sequence[Path], *, names: Sequence[str] | None = None) -> ToolRun:
            raise RuntimeError("a bug")

    tools = ToolBox({"exiftool": lambda: Broken("exiftool", 0, [])})
    with pytest.raises(RuntimeError, match="a bug"):
        _run([FileToCharacterise(1, tmp_path / "a.png", "fmt/11")], tmp_path / "out", tools)


def test_a_registry_of_ones_own(tmp_path: Path) -> None:
    log: list[tuple[str, float, float]] = []
    own = Registry(entries=(FormatEntry("Text", "text", ("x-fmt/111",), ("exiftool",)),))
    result = characterise(
        [FileToCharacterise("t", tmp_path / "t.txt", "x-fmt/111")],
        registry=own,
        out_dir=tmp_path / "out",
        tools=_slow_box(0.0, log),
    )
    assert result.kinds == {"t": "text"} and result.properties == {}
    assert [name for name, _, _ in log] == ["exiftool"]
