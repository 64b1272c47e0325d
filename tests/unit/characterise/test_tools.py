"""The three tools on real files: mediainfo.py, exiftool.py, ffprobe.py and tools.py.

No tool is mocked. Process counts come from a wrapper around the real
``subprocess.Popen`` that only counts; MediaInfo's crash handling is tested
with a shell script that crashes on one file name and runs the real
MediaInfo otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from preservation.characterise import (
    CharacterisationTool,
    ExifTool,
    FFprobe,
    MediaInfo,
    ToolBox,
)
from preservation.errors import ConfigurationError, ToolError, ToolUnavailableError
from tests.unit.characterise.conftest import Spawns, require


@pytest.fixture
def exiftool() -> Iterator[ExifTool]:
    require("exiftool")
    tool = ExifTool()
    yield tool
    tool.close()


def _awkward_copies(source: Path, folder: Path) -> list[Path]:
    """The same file under names that break naive tool calls."""
    folder.mkdir(exist_ok=True)
    names = [
        "plain" + source.suffix,
        "new\nline" + source.suffix,
        "trailing blank" + source.suffix + " ",
        "-looks-like-an-option" + source.suffix,
        "été" + source.suffix,
        os.fsdecode(b"latin1-\xe9t\xe9" + source.suffix.encode()),
    ]
    copies = []
    for name in names:
        target = folder / name
        shutil.copyfile(source, target)
        copies.append(target)
    return copies


def test_every_tool_implements_the_contract() -> None:
    for tool in (MediaInfo(), ExifTool(), FFprobe()):
        assert isinstance(tool, CharacterisationTool)


# MediaInfo


def test_mediainfo_reads_a_batch_in_one_process(samples: dict[str, Path], spawns: Spawns) -> None:
    require("mediainfo")
    tool = MediaInfo()
    assert tool.version().count(".") >= 1
    paths = [samples["wav"], samples["flac"], samples["mkv"], samples["mp4"]]
    names = ["audio/tone.wav", "audio/tone.flac", "video/ffv1.mkv", "video/h264.mp4"]
    run = tool.run(paths, names=names)
    assert len(spawns.of("mediainfo")) == 2  # --Version once, then the batch
    assert run.tool == "mediainfo" and run.version == tool.version()
    assert run.errors == {}
    assert [r["media"]["@ref"] for r in run.per_file] == names
    assert [r["media"]["track"][0]["Format"] for r in run.per_file] == [
        "Wave",
        "FLAC",
        "Matroska",
        "MPEG-4",
    ]
    assert run.document == run.per_file  # in argument order, the same objects
    tool.run(paths)
    assert len(spawns.of("mediainfo")) == 3  # the version is asked once


def test_mediainfo_one_file_gives_an_object_and_still_a_record(samples: dict[str, Path]) -> None:
    require("mediainfo")
    run = MediaInfo().run([samples["flac"]])
    assert run.per_file[0]["media"]["@ref"] == str(samples["flac"])
    assert isinstance(run.document, list) and len(run.document) == 1


def test_mediainfo_reports_a_file_it_cannot_open_and_keeps_the_rest(
    samples: dict[str, Path], tmp_path: Path
) -> None:
    require("mediainfo")
    run = MediaInfo().run([samples["wav"], tmp_path / "gone.wav", samples["mp3"]])
    assert run.errors == {1: "mediainfo could not open the file"}
    assert run.per_file[1] == {}
    assert run.per_file[2]["media"]["track"][1]["Format"] == "MPEG Audio"


def test_mediainfo_cuts_long_command_lines_into_few_processes(
    samples: dict[str, Path], tmp_path: Path, spawns: Spawns
) -> None:
    require("mediainfo")
    paths = []
    for i in range(12):
        paths.append(tmp_path / f"copy-{i:02d}-{'x' * 60}.wav")
        shutil.copyfile(samples["wav"], paths[-1])
    tool = MediaInfo(max_arg_bytes=4 * (len(str(paths[0])) + 1))
    run = tool.run(paths)
    assert run.errors == {}
    assert len(spawns.of("mediainfo")) == 1 + 3  # version, then 12 files in chunks of 4
    assert [r["media"]["@ref"] for r in run.per_file] == [str(p) for p in paths]


def test_mediainfo_takes_awkward_file_names(samples: dict[str, Path], tmp_path: Path) -> None:
    require("mediainfo")
    copies = _awkward_copies(samples["flac"], tmp_path / "odd")
    run = MediaInfo().run(copies, names=[f"name-{i}" for i in range(len(copies))])
    assert run.errors == {}
    for i, record in enumerate(run.per_file):
        assert record["media"]["@ref"] == f"name-{i}"
        assert record["media"]["track"][0]["Format"] == "FLAC"


def _crashing_mediainfo(folder: Path, *, always: bool = False) -> str:
    """A MediaInfo that dies of SIGSEGV on any file named BOOM*, or on everything."""
    real = shutil.which("mediainfo")
    script = folder / "mediainfo"
    condition = "true" if always else 'case "$*" in *BOOM*) true;; *) false;; esac'
    script.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = "--Version" ]; then exec ' + f"{real}" + ' "$@"; fi\n'
        f"if {condition}; then kill -SEGV $$; fi\n"
        f'exec {real} "$@"\n',
        encoding="utf-8",
    )
    script.chmod(0o755)
    return str(script)


def test_a_file_that_crashes_mediainfo_costs_only_that_file(
    samples: dict[str, Path], tmp_path: Path, spawns: Spawns
) -> None:
    require("mediainfo")
    paths = []
    for i in range(8):
        name = "BOOM.wav" if i == 5 else f"tone-{i}.wav"
        paths.append(tmp_path / name)
        shutil.copyfile(samples["wav"], paths[-1])
    tool = MediaInfo(_crashing_mediainfo(tmp_path))
    run = tool.run(paths)
    assert list(run.errors) == [5]
    assert "status -11" in run.errors[5]
    assert all(run.per_file[i] for i in range(8) if i != 5)
    # halving 8 -> 4 -> 2 -> 1 around the bad file: 1 + 2 + 2 + 2 processes, not 8
    assert len(spawns.of("mediainfo")) == 1 + 7


def test_mediainfo_failing_on_every_file_is_a_tool_error(
    samples: dict[str, Path], tmp_path: Path
) -> None:
    require("mediainfo")
    tool = MediaInfo(_crashing_mediainfo(tmp_path, always=True))
    with pytest.raises(ToolError, match="every file") as caught:
        tool.run([samples["wav"], samples["flac"]])
    assert not isinstance(caught.value, ToolUnavailableError)


def test_mediainfo_not_installed(tmp_path: Path, samples: dict[str, Path]) -> None:
    tool = MediaInfo(str(tmp_path / "no-such-mediainfo"))
    with pytest.raises(ToolUnavailableError) as caught:
        tool.version()
    assert caught.value.context["tool"] == "mediainfo"
    with pytest.raises(ToolUnavailableError):
        tool.run([samples["wav"]])


# ExifTool


def test_exiftool_keeps_one_process_for_many_batches(
    exiftool: ExifTool, samples: dict[str, Path], spawns: Spawns
) -> None:
    assert exiftool.version().count(".") == 1
    pid = exiftool.pid
    assert pid is not None
    first = exiftool.run([samples["png"], samples["jpeg"]])
    second = exiftool.run([samples["tiff"], samples["pdf"], samples["gif"]])
    assert exiftool.pid == pid and exiftool.starts == 1
    assert spawns.of("exiftool") == [["exiftool", "-stay_open", "True", "-@", "-"]]
    assert [r["File:FileType"] for r in first.per_file + second.per_file] == [
        "PNG",
        "JPEG",
        "TIFF",
        "PDF",
        "GIF",
    ]
    assert first.per_file[0]["PNG:ImageWidth"] == 40  # -n: numbers, not print strings
    assert first.per_file[0]["PNG:ColorType"] == 2
    assert first.document == first.per_file


def test_exiftool_echoes_the_given_names_and_never_the_staging_folder(
    exiftool: ExifTool, samples: dict[str, Path]
) -> None:
    run = exiftool.run([samples["png"], samples["pdf"]], names=["img/rgb.png", "doc/a.pdf"])
    assert [r["SourceFile"] for r in run.per_file] == ["img/rgb.png", "doc/a.pdf"]
    text = json.dumps(run.document)
    assert str(samples["png"].parent) not in text
    assert "System:Directory" not in text
    assert run.per_file[0]["System:FileName"] == "rgb.png"


def test_exiftool_reports_missing_and_unreadable_files_per_file(
    exiftool: ExifTool, samples: dict[str, Path], tmp_path: Path
) -> None:
    noise = tmp_path / "noise.bin"
    noise.write_bytes(bytes(range(256)) * 3)
    run = exiftool.run([samples["png"], tmp_path / "gone.png", noise])
    assert run.errors == {1: "File not found", 2: "Unknown file type"}
    assert run.per_file[1] == {}
    assert run.per_file[2]["SourceFile"] == str(noise)


def test_exiftool_takes_awkward_file_names(
    exiftool: ExifTool, samples: dict[str, Path], tmp_path: Path
) -> None:
    copies = _awkward_copies(samples["png"], tmp_path / "odd")
    run = exiftool.run(copies)
    assert run.errors == {}
    assert [r["PNG:ImageWidth"] for r in run.per_file] == [40] * len(copies)
    assert [r["System:FileName"] for r in run.per_file][:5] == [p.name for p in copies[:5]]
    assert run.per_file[5]["System:FileName"] == "latin1-\\xe9t\\xe9.png"
    json.dumps(run.document, ensure_ascii=False).encode("utf-8")  # always valid UTF-8


def test_exiftool_drains_a_flood_on_standard_error(exiftool: ExifTool, tmp_path: Path) -> None:
    """~200 KB of error lines: more than a pipe holds, so a reader must keep draining."""
    missing = [tmp_path / f"{'m' * 80}-{i:05d}.png" for i in range(2000)]
    run = exiftool.run(missing)
    assert len(run.errors) == 2000 and set(run.errors.values()) == {"File not found"}
    assert exiftool.starts == 1


def test_exiftool_restarts_when_its_process_died(
    exiftool: ExifTool, samples: dict[str, Path]
) -> None:
    exiftool.run([samples["png"]])
    pid = exiftool.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while exiftool.pid is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    run = exiftool.run([samples["jpeg"]])
    assert run.per_file[0]["File:FileType"] == "JPEG"
    assert exiftool.starts == 2 and exiftool.pid not in (None, pid)


def test_exiftool_close_ends_the_process_cleanly(
    exiftool: ExifTool, samples: dict[str, Path]
) -> None:
    exiftool.run([samples["png"]])
    pid = exiftool.pid
    assert pid is not None
    exiftool.close()
    assert exiftool.pid is None
    with pytest.raises(ProcessLookupError):  # gone, and reaped
        os.kill(pid, 0)
    assert exiftool.run([samples["png"]]).per_file[0]["PNG:ImageHeight"] == 30
    assert exiftool.starts == 2


def test_exiftool_not_installed(tmp_path: Path, samples: dict[str, Path]) -> None:
    tool = ExifTool(str(tmp_path / "no-such-exiftool"))
    with pytest.raises(ToolUnavailableError) as caught:
        tool.run([samples["png"]])
    assert caught.value.context["tool"] == "exiftool"


# ffprobe, through PyAV


def test_ffprobe_starts_no_process_and_names_its_libraries(
    samples: dict[str, Path], spawns: Spawns
) -> None:
    tool = FFprobe()
    assert tool.version().startswith("libavformat ") and "(PyAV " in tool.version()
    run = tool.run([samples["mkv"], samples["mp4"], samples["mp3"]], names=["a", "b", "c"])
    assert spawns.calls == []
    assert run.errors == {}
    assert [r["format"]["filename"] for r in run.per_file] == ["a", "b", "c"]
    mkv, mp4, mp3 = run.per_file
    assert [s["codec_name"] for s in mkv["streams"]] == ["ffv1", "flac"]
    assert mkv["streams"][0]["avg_frame_rate"] == "25/1"
    assert (mkv["streams"][0]["width"], mkv["streams"][0]["height"]) == (64, 48)
    assert mp4["streams"][0]["profile"] == "High"
    assert mp3["streams"][0]["codec_name"] == "mp3"  # the codec, not the decoder (mp3float)
    assert run.document == run.per_file


def test_ffprobe_reports_unreadable_files_without_their_paths(
    samples: dict[str, Path], tmp_path: Path
) -> None:
    junk = tmp_path / "junk.mkv"
    junk.write_bytes(b"not a matroska file" * 10)
    run = FFprobe().run([junk, samples["wav"], tmp_path / "gone.mkv"])
    assert set(run.errors) == {0, 2}
    assert run.per_file[0] == {} and run.per_file[2] == {}
    assert str(tmp_path) not in json.dumps(run.errors)
    assert run.per_file[1]["streams"][0]["codec_name"] == "pcm_s24le"


def test_ffprobe_takes_awkward_file_names(samples: dict[str, Path], tmp_path: Path) -> None:
    copies = _awkward_copies(samples["flac"], tmp_path / "odd")
    run = FFprobe().run(copies)
    assert run.errors == {}
    assert {r["streams"][0]["codec_name"] for r in run.per_file} == {"flac"}


@pytest.mark.parametrize("sample", ["mkv", "mp4", "wav", "mp3"])
def test_ffprobe_shape_matches_the_real_ffprobe(samples: dict[str, Path], sample: str) -> None:
    require("ffprobe")
    real = json.loads(
        subprocess.run(
            ["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json"]
            + [str(samples[sample])],
            capture_output=True,
            check=True,
        ).stdout
    )
    ours = FFprobe().run([samples[sample]]).per_file[0]
    assert ours["format"]["format_name"] == real["format"]["format_name"]
    assert ours["format"]["nb_streams"] == real["format"]["nb_streams"]
    assert ours["format"]["size"] == real["format"]["size"]
    fields = ["index", "codec_name", "codec_type", "width", "height", "pix_fmt", "sample_rate"]
    fields += ["channels", "avg_frame_rate", "time_base", "codec_tag_string", "codec_tag"]
    for mine, theirs in zip(ours["streams"], real["streams"], strict=True):
        assert {k: mine.get(k) for k in fields} == {k: theirs.get(k) for k in fields}


# The toolbox


def test_the_toolbox_makes_each_tool_once_and_closes_them(samples: dict[str, Path]) -> None:
    require("exiftool")
    box = ToolBox()
    tool = box.get("exiftool")
    assert box.get("exiftool") is tool and isinstance(tool, ExifTool)
    assert box.names() == ["exiftool", "ffprobe", "mediainfo", "siard"]
    tool.run([samples["png"]])
    assert tool.pid is not None
    box.close()
    assert tool.pid is None
    assert box.get("exiftool") is not tool  # a fresh one after close


def test_the_toolbox_refuses_an_unknown_tool() -> None:
    with pytest.raises(ConfigurationError, match="jhove"):
        ToolBox().get("jhove")
