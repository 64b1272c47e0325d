"""Archival Storage: LTFS volumes on LTO tape, behind one small ``TapeDevice`` interface.

``interfaces`` defines the drive as LTFS needs it; ``device`` drives a real one
through Linux ``st``; ``emulator`` keeps cartridges in directories laid out as
the reference LTFS file backend does; ``clock`` models drive mechanics so
benchmarks count seconds without waiting; ``ltfs`` (with ``ltfs_label`` and
``ltfs_index``) reads and writes the ISO/IEC 20919 format in pure Python.
Libraries, pools and the dual-site store are built on these, elsewhere.
"""

from preservation.storage.clock import Clock, DriveTiming, SimulatedClock, SystemClock
from preservation.storage.device import LinuxTapeDevice, SystemCalls
from preservation.storage.emulator import (
    DeviceStats,
    EmulatedCartridge,
    EmulatedTapeDevice,
    Faults,
)
from preservation.storage.interfaces import (
    EndOfDataError,
    MamAttribute,
    MamFormat,
    MamId,
    OversizeBlockError,
    PartitionSpace,
    TapeDevice,
    TapePosition,
    TapeStatus,
)
from preservation.storage.ltfs import (
    BLOCK_SIZE,
    SHA256_XATTR,
    FileEntry,
    LTFSFileReader,
    LTFSVolume,
)

__all__ = [
    "BLOCK_SIZE",
    "SHA256_XATTR",
    "Clock",
    "DeviceStats",
    "DriveTiming",
    "EmulatedCartridge",
    "EmulatedTapeDevice",
    "EndOfDataError",
    "Faults",
    "FileEntry",
    "LTFSFileReader",
    "LTFSVolume",
    "LinuxTapeDevice",
    "MamAttribute",
    "MamFormat",
    "MamId",
    "OversizeBlockError",
    "PartitionSpace",
    "SimulatedClock",
    "SystemCalls",
    "SystemClock",
    "TapeDevice",
    "TapePosition",
    "TapeStatus",
]
