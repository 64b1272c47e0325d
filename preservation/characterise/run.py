"""The batch runner: every file through the tools its format calls for, each tool once per batch.

This is the one function the characterise stage calls. Files are grouped by
tool (a Matroska file goes to both MediaInfo and ffprobe), each tool takes its
files in batches of ``batch_size``, and the tools run at the same time, a
thread each: they are external processes (or, for ffprobe, C code in PyAV),
so a SIP of images and videos costs about as long as its slowest tool, not the
sum of all three.

Each batch's full output becomes one compact JSON document in ``out_dir``,
``<tool>-<batch number>.json``, wrapped as ``{"tool", "version", "files",
"output"}``, where ``files`` lists the names relative to ``relative_to`` (the
AIP's layout, never the staging folder: the tools' echoed paths are replaced
by the same names). Documents are written by the calling thread as each
batch arrives, each through a temporary file and a rename, so a crash never
leaves half a document; ``documents`` lists them in tool and batch order.

What goes wrong is data, as elsewhere in the pipeline: a tool that is not
installed gives every file it should have measured the error
``"<tool>: not installed"``; a tool that fails on a batch gives that batch's
files ``"<tool>: <message>"``; a file a tool could not read, the same for that
file alone. The stage decides what that means for the SIP.
"""

from __future__ import annotations

import json
import os
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from preservation.characterise.properties import significant_properties
from preservation.characterise.registry import Registry
from preservation.characterise.tools import ToolBox, ToolRun, display_name
from preservation.errors import ToolError, ToolUnavailableError

__all__ = ["Characterisation", "FileToCharacterise", "characterise"]


@dataclass(frozen=True)
class FileToCharacterise:
    """One file: the caller's key for it (a file id), where it is, and its PRONOM id."""

    key: Any
    path: Path
    puid: str | None


@dataclass
class Characterisation:
    """What a run found.

    ``properties``: key -> significant properties, for files that have some;
    ``tool_errors``: key -> ``"<tool>: <message>"`` for each tool that failed
    on the file; ``documents``: the output documents written, in order;
    ``tools``: name -> version of each tool that ran; ``kinds``: key -> the
    registry's kind for every file whose format has an entry.
    """

    properties: dict[Any, dict[str, Any]] = field(default_factory=dict)
    tool_errors: dict[Any, list[str]] = field(default_factory=dict)
    documents: list[Path] = field(default_factory=list)
    tools: dict[str, str] = field(default_factory=dict)
    kinds: dict[Any, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Batch:
    """One tool's answer for one batch, handed from the tool's thread to the caller's."""

    tool: str
    number: int
    files: list[FileToCharacterise]
    run: ToolRun | None = None
    error: str | None = None


_DONE = object()


def characterise(
    files: Sequence[FileToCharacterise],
    *,
    registry: Registry,
    out_dir: Path,
    tools: ToolBox,
    batch_size: int = 1000,
    progress: Callable[[int, int], None] | None = None,
    relative_to: Path | None = None,
) -> Characterisation:
    """Characterise ``files`` with the tools the registry names for their formats.

    ``progress(done, total)`` counts (file, tool) pairs and is called from this
    thread after each batch. Files with no registry entry, or whose entry
    names no tool, are left alone.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    result = Characterisation()
    by_tool: dict[str, list[FileToCharacterise]] = {}
    order: dict[Any, tuple[str, ...]] = {}
    for item in files:
        entry = registry.entry_for(item.puid)
        if entry is None:
            continue
        result.kinds[item.key] = entry.kind
        if not entry.characterise:
            continue
        order[item.key] = entry.characterise
        for tool in entry.characterise:
            by_tool.setdefault(tool, []).append(item)
    total = sum(len(group) for group in by_tool.values())
    if progress is not None:
        progress(0, total)
    if not by_tool:
        return result

    names = {
        item.key: _name(item.path, relative_to) for group in by_tool.values() for item in group
    }
    records: dict[tuple[Any, str], dict[str, Any]] = {}
    answers: queue.Queue[Any] = queue.Queue()
    stop = threading.Event()  # set when this thread gives up: the tools stop after their batch
    workers = [
        threading.Thread(
            target=_work,
            args=(tools, tool, group, batch_size, names, answers, stop),
            name=f"characterise-{tool}",
            daemon=True,
        )
        for tool, group in sorted(by_tool.items())
    ]
    for worker in workers:
        worker.start()

    out_dir.mkdir(parents=True, exist_ok=True)
    done = 0
    running = len(workers)
    failure: BaseException | None = None
    try:
        while running:
            answer = answers.get()
            if answer is _DONE:
                running -= 1
                continue
            if isinstance(answer, BaseException):  # a bug in a tool: raised when all are done
                failure = failure or answer
                continue
            batch: _Batch = answer
            _take(batch, result, records, names, out_dir)
            done += len(batch.files)
            if progress is not None:
                progress(done, total)
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    if failure is not None:
        raise failure
    result.documents.sort(key=_document_order)

    for item in files:
        tools_for = order.get(item.key)
        if not tools_for:
            continue
        found = {t: records[(item.key, t)] for t in tools_for if (item.key, t) in records}
        props = significant_properties(result.kinds[item.key], found)
        if props:
            result.properties[item.key] = props
    return result


def _document_order(path: Path) -> tuple[str, int]:
    tool, _, number = path.stem.rpartition("-")
    return tool, int(number)


def _name(path: Path, relative_to: Path | None) -> str:
    """The name a file goes by in documents: relative to ``relative_to`` when it is inside."""
    if relative_to is not None:
        try:
            return display_name(Path(path).relative_to(relative_to).as_posix())
        except ValueError:
            pass
    return display_name(os.fspath(path))


def _work(
    tools: ToolBox,
    tool_name: str,
    group: list[FileToCharacterise],
    batch_size: int,
    names: dict[Any, str],
    answers: queue.Queue[Any],
    stop: threading.Event,
) -> None:
    """One tool's thread: its batches, one after the other, each answer onto the queue."""
    try:
        batches = [group[i : i + batch_size] for i in range(0, len(group), batch_size)]
        try:
            tool = tools.get(tool_name)
            tool.version()
        except ToolError as err:
            failed = "not installed" if isinstance(err, ToolUnavailableError) else err.message
            for number, files in enumerate(batches, 1):
                answers.put(_Batch(tool_name, number, files, error=failed))
            return
        for number, files in enumerate(batches, 1):
            if stop.is_set():
                return
            try:
                run = tool.run([f.path for f in files], names=[names[f.key] for f in files])
            except ToolUnavailableError:
                for later, rest in enumerate(batches[number - 1 :], number):
                    answers.put(_Batch(tool_name, later, rest, error="not installed"))
                return
            except ToolError as err:
                answers.put(_Batch(tool_name, number, files, error=err.message))
                continue
            answers.put(_Batch(tool_name, number, files, run=run))
    except BaseException as err:  # noqa: BLE001 - handed to the caller's thread
        answers.put(err)
    finally:
        answers.put(_DONE)


def _take(
    batch: _Batch,
    result: Characterisation,
    records: dict[tuple[Any, str], dict[str, Any]],
    names: dict[Any, str],
    out_dir: Path,
) -> None:
    """Record one batch's answer: its document, its records, its errors."""
    tool = batch.tool
    if batch.run is None:
        for item in batch.files:
            result.tool_errors.setdefault(item.key, []).append(f"{tool}: {batch.error}")
        return
    run = batch.run
    result.tools[tool] = run.version
    for index, item in enumerate(batch.files):
        record = run.per_file[index] if index < len(run.per_file) else {}
        if record:
            records[(item.key, tool)] = record
        if index in run.errors:
            result.tool_errors.setdefault(item.key, []).append(f"{tool}: {run.errors[index]}")
    document = {
        "tool": tool,
        "version": run.version,
        "files": [names[item.key] for item in batch.files],
        "output": run.document,
    }
    path = out_dir / f"{tool}-{batch.number:03d}.json"
    temporary = path.with_name(f".{path.name}.tmp")
    text = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
    temporary.write_bytes(text.encode("utf-8", "backslashreplace"))
    os.replace(temporary, path)
    result.documents.append(path)
