"""siegfried (Richard Lehane) as a ``FormatEngine``, through the ``pygfried`` bindings.

An optional extra (``pip install preservation[siegfried]``): siegfried ships a
newer PRONOM release than fido 1.6.1 and is fast (compiled Go), so it is the
engine to compare fido against, file by file (:mod:`preservation.identify.compare`).
``pygfried`` is imported only when the engine is built, so the pipeline runs
without it and says clearly what is missing when it is asked for.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from preservation.errors import IdentificationError
from preservation.identify.interfaces import Basis, Identification

__all__ = ["SiegfriedEngine"]

_lock = threading.Lock()
_scanner: tuple[Any, str, str] | None = None  # (Scanner, siegfried version, release)


def _load() -> tuple[Any, str, str]:
    global _scanner
    with _lock:
        if _scanner is None:
            try:
                import pygfried
            except ImportError as err:
                raise IdentificationError(
                    "the siegfried engine needs the 'pygfried' package "
                    "(install the 'siegfried' extra: pip install 'preservation[siegfried]')"
                ) from err
            scanner = pygfried.Scanner()
            header = scanner.identify_many([])  # no files: just the signature header
            details = "; ".join(i["details"] for i in header["identifiers"])
            release = f"{details} ({header['signature']}, created {header['created']})"
            _scanner = (scanner, header["siegfried"], release)
        return _scanner


def _basis(text: str) -> Basis:
    """siegfried explains its basis in prose ("extension match pdf; byte match at ...")."""
    if "container" in text:
        return "container"
    if any(kind in text for kind in ("byte match", "text match", "xml match", "riff match")):
        return "signature"
    if "extension match" in text:
        return "extension"
    return "signature" if text else "none"


class SiegfriedEngine:
    """siegfried's PRONOM identifier; the scanner is shared by the whole process."""

    name = "siegfried"

    def __init__(self) -> None:
        self._scanner, self._version, self._release = _load()

    @property
    def version(self) -> str:
        return self._version

    @property
    def signature_release(self) -> str:
        return self._release

    def identify_batch(self, paths: Sequence[Path]) -> list[Identification]:
        started = time.perf_counter()
        paths = [Path(p) for p in paths]
        if not paths:
            return []
        try:
            report = self._scanner.identify_many([str(p) for p in paths])
        except OSError as err:  # pygfried.GoError: the whole call failed
            raise IdentificationError(f"siegfried failed: {err}", path=paths[0]) from err
        by_name = {f["filename"]: f for f in report["files"]}
        each = (time.perf_counter() - started) / len(paths)
        return [self._result(p, by_name.get(str(p)), each) for p in paths]

    def _result(
        self, path: Path, entry: Mapping[str, Any] | None, elapsed: float
    ) -> Identification:
        if entry is None:
            return self._failed(path, "siegfried returned no result for this file", elapsed)
        matches = [m for m in entry["matches"] if m["id"] != "UNKNOWN"]
        errors = entry.get("errors") or ""
        if not entry["matches"] and errors:
            return self._failed(path, errors, elapsed)
        warnings = [m["warning"] for m in entry["matches"] if m.get("warning")]
        if errors:
            warnings.insert(0, errors)
        first = matches[0] if matches else None
        return Identification(
            path=path,
            puids=tuple(m["id"] for m in matches),
            format_name=(first["format"] or None) if first else None,
            format_version=(first["version"] or None) if first else None,
            mime=(first["mime"] or None) if first else None,
            basis=_basis(first["basis"]) if first else "none",
            engine=self.name,
            engine_version=self.version,
            signature_release=self.signature_release,
            warning="; ".join(warnings) or None,
            elapsed=elapsed,
        )

    def _failed(self, path: Path, error: str, elapsed: float) -> Identification:
        return Identification.failed(
            path,
            engine=self.name,
            engine_version=self.version,
            signature_release=self.signature_release,
            error=error,
            elapsed=elapsed,
        )
