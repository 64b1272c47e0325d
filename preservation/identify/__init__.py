"""Ingest stage 4: the format of every file, by PRONOM id, on all cores.

``interfaces`` holds the contract (``FormatEngine``) and the answer
(``Identification``: PUIDs, name, version, MIME, basis, tool and signature
versions, and uncertainty as data). ``fido`` (the default) and ``siegfried``
(optional extra, via pygfried) implement it; ``registry`` builds an engine once
per process by name; ``pool`` spreads files over worker processes in batches
with a per-file time limit; ``compare`` lines engines up file by file.
"""

from preservation.identify.compare import Comparison, compare, summarise
from preservation.identify.fido import FidoEngine
from preservation.identify.interfaces import Basis, FormatEngine, Identification
from preservation.identify.pool import (
    IdentificationPool,
    WorkerStats,
    default_workers,
    identify_files,
)
from preservation.identify.registry import engine_names, get_engine, register_engine
from preservation.identify.siegfried import SiegfriedEngine

__all__ = [
    "Basis",
    "Comparison",
    "FidoEngine",
    "FormatEngine",
    "Identification",
    "IdentificationPool",
    "SiegfriedEngine",
    "WorkerStats",
    "compare",
    "default_workers",
    "engine_names",
    "get_engine",
    "identify_files",
    "register_engine",
    "summarise",
]
