"""A fake ``mtx`` program and the drives behind it, for ScsiLibrary tests without a library.

:func:`install` writes an executable ``mtx`` (a small Python script) into a
folder the test puts first on PATH, so the code under test runs a real
subprocess exactly as it would run the real tool. The library's state (what
is in which slot and drive) lives in a JSON file named by ``FAKE_MTX_STATE``;
``status`` prints it as mtx does (tags padded to 36 characters), and moves
fail as mtx fails: a message on stderr and exit status 1.

:class:`DriveBays` puts a :class:`~tests.unit.storage.fake_st.FakeStKernel`
tape behind each drive's ``st`` node: whichever cartridge the fake changer has
put in the drive answers, so data written in one drive is read in another.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from preservation.storage.device import LinuxTapeDevice, SystemCalls

from .fake_st import FakeStKernel

SCRIPT = r"""
import fcntl
import json
import os
import sys


def fail(message):
    sys.stderr.write(message + "\n")
    sys.exit(1)


def tag(text):
    return text.ljust(36)


def status(state):
    slots, drives = state["slots"], state["drives"]
    ie = sum(1 for s in slots if s["ie"])
    out = [f"  Storage Changer {state['device']}:{len(drives)} Drives, {len(slots)} Slots "
           f"( {ie} Import/Export )"]
    for n, d in enumerate(drives):
        if d is None:
            out.append(f"Data Transfer Element {n}:Empty")
            continue
        source = "Unknown Storage Element" if d["source"] is None else (
            f"Storage Element {d['source']}")
        line = f"Data Transfer Element {n}:Full ({source} Loaded)"
        if state["barcodes"]:
            line += f":VolumeTag = {tag(d['barcode'])}"
        out.append(line)
    for n, s in enumerate(slots, start=1):
        line = f"      Storage Element {n}{' IMPORT/EXPORT' if s['ie'] else ''}:"
        line += "Full " if s["barcode"] else "Empty"
        if s["barcode"] and state["barcodes"]:
            line += f":VolumeTag={tag(s['barcode'])}"
        out.append(line)
    print("\n".join(out))


def number(text, limit, what):
    try:
        value = int(text)
    except ValueError:
        fail(f"mtx: Invalid {what} number '{text}'")
    if not 0 <= value < limit:
        fail(f"mtx: Invalid {what} number {text}")
    return value


def main(state):
    args = sys.argv[1:]
    if len(args) < 3 or args[0] != "-f":
        fail("Usage: mtx --version | mtx [ -f <device> ] command [ command ... ]")
    device, command, rest = args[1], args[2], args[3:]
    if device != state["device"]:
        fail(f"mtx: cannot open SCSI device '{device}' - No such file or directory")
    state["log"].append([command, *rest])
    if state.get("fail") and state["fail"].get(command):
        fail(state["fail"][command])
    slots, drives = state["slots"], state["drives"]
    if command == "status" and state.get("recorded"):
        # A library's own words: a recorded `mtx status`, replayed byte for byte.
        with open(state["recorded"], encoding="utf-8") as recorded:
            sys.stdout.write(recorded.read())
    elif command == "status":
        status(state)
    elif command == "inventory":
        pass
    elif command in ("load", "unload"):
        slot = number(rest[0], len(slots) + 1, "Storage Element") if rest else fail(
            f"mtx: {command} requires a storage element")
        if slot == 0:
            fail(f"mtx: Invalid Storage Element number 0")
        drive = number(rest[1], len(drives), "Data Transfer Element") if len(rest) > 1 else 0
        if command == "load":
            if drives[drive] is not None:
                fail(f"mtx: Drive {drive} Full (Storage Element {drives[drive]['source']} loaded)")
            if not slots[slot - 1]["barcode"]:
                fail(f"mtx: source Element Address {slot} is Empty")
            drives[drive] = {"barcode": slots[slot - 1]["barcode"], "source": slot}
            slots[slot - 1]["barcode"] = None
            print(f"Loading media from Storage Element {slot} into drive {drive}...done")
        else:
            if drives[drive] is None:
                fail(f"mtx: Data Transfer Element {drive} is Empty")
            if slots[slot - 1]["barcode"]:
                fail(f"mtx: Storage Element {slot} is Already Full")
            slots[slot - 1]["barcode"] = drives[drive]["barcode"]
            drives[drive] = None
            print(f"Unloading drive {drive} into Storage Element {slot}...done")
    elif command == "transfer":
        if len(rest) != 2:
            fail("mtx: transfer requires a source and a destination storage element")
        source = number(rest[0], len(slots) + 1, "Storage Element")
        target = number(rest[1], len(slots) + 1, "Storage Element")
        if source == 0 or target == 0:
            fail("mtx: Invalid Storage Element number 0")
        if not slots[source - 1]["barcode"]:
            fail(f"mtx: source Element Address {source} is Empty")
        if slots[target - 1]["barcode"]:
            fail(f"mtx: destination Element Address {target} is Already Full")
        slots[target - 1]["barcode"] = slots[source - 1]["barcode"]
        slots[source - 1]["barcode"] = None
    else:
        fail(f"mtx: Unrecognized command '{command}'")


with open(os.environ["FAKE_MTX_STATE"], "r+") as fh:
    fcntl.flock(fh, fcntl.LOCK_EX)
    state = json.load(fh)
    try:
        main(state)
    finally:
        fh.seek(0)
        fh.truncate()
        json.dump(state, fh)
"""


class FakeLibrary:
    """The JSON state file behind the fake mtx: slots (1-based in mtx, 0-based here) and drives."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def create(
        cls,
        path: Path,
        *,
        device: str = "/dev/sg3",
        drives: int = 2,
        slots: Sequence[str | None],
        ie_slots: Sequence[str | None] = (),
        barcodes: bool = True,
    ) -> FakeLibrary:
        state = {
            "device": device,
            "barcodes": barcodes,
            "drives": [None] * drives,
            "slots": [{"barcode": b, "ie": False} for b in slots]
            + [{"barcode": b, "ie": True} for b in ie_slots],
            "log": [],
            "fail": {},
        }
        path.write_text(json.dumps(state), encoding="utf-8")
        return cls(path)

    def read(self) -> dict[str, Any]:
        state: dict[str, Any] = json.loads(self.path.read_text(encoding="utf-8"))
        return state

    def update(self, **changes: Any) -> None:
        state = self.read()
        state.update(changes)
        self.path.write_text(json.dumps(state), encoding="utf-8")

    def slot(self, number: int) -> str | None:
        value: str | None = self.read()["slots"][number - 1]["barcode"]
        return value

    def drive(self, number: int) -> str | None:
        entry = self.read()["drives"][number]
        return None if entry is None else str(entry["barcode"])

    def moves(self) -> list[list[str]]:
        return [c for c in self.read()["log"] if c[0] != "status"]


def install(bin_dir: Path, state: Path, monkeypatch: Any) -> Path:
    """Write the fake ``mtx`` into ``bin_dir``, put it first on PATH, point it at ``state``."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    program = bin_dir / "mtx"
    program.write_text(f"#!{sys.executable}\n{SCRIPT}", encoding="utf-8")
    program.chmod(program.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("FAKE_MTX_STATE", str(state))
    return program


class _Bay:
    """One drive's st node: calls go to the tape of the cartridge the changer put there."""

    def __init__(self, bays: DriveBays, number: int) -> None:
        self.bays = bays
        self.number = number
        self.kernel: FakeStKernel | None = None

    def open(self, path: str, flags: int) -> int:
        barcode = self.bays.library.drive(self.number)
        if barcode is None:
            raise OSError(errno.ENOMEDIUM, os.strerror(errno.ENOMEDIUM))
        self.kernel = self.bays.tape(barcode)
        self.bays.opened.append((path, barcode))
        return self.kernel.open(path, flags)

    def _k(self) -> FakeStKernel:
        if self.kernel is None:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        return self.kernel

    def close(self, fd: int) -> None:
        self._k().close(fd)
        self.kernel = None

    def read(self, fd: int, n: int) -> bytes:
        return self._k().read(fd, n)

    def write(self, fd: int, data: Any) -> int:
        return self._k().write(fd, data)

    def ioctl(self, fd: int, request: int, arg: Any, mutate: bool = True) -> int:
        return self._k().ioctl(fd, request, arg, mutate)


class DriveBays:
    """The drives of a fake library: ``/dev/nst<N>`` is drive N; one fake tape per barcode."""

    def __init__(self, library: FakeLibrary, capacity: int = 64 << 20) -> None:
        self.library = library
        self.capacity = capacity
        self.tapes: dict[str, FakeStKernel] = {}
        self.opened: list[tuple[str, str]] = []

    def tape(self, barcode: str) -> FakeStKernel:
        if barcode not in self.tapes:
            self.tapes[barcode] = FakeStKernel(self.capacity)
        return self.tapes[barcode]

    def device(self, path: str) -> LinuxTapeDevice:
        """The device factory a ScsiLibrary is given."""
        number = int(path.rsplit("nst", 1)[1])
        bay = _Bay(self, number)
        calls = SystemCalls(bay.open, bay.close, bay.read, bay.write, bay.ioctl)
        return LinuxTapeDevice(path, syscalls=calls)
