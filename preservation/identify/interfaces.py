"""What a format engine promises, and what it answers.

fido is the default engine and siegfried an optional one; both sit behind
``FormatEngine`` so the pipeline, the worker pool and the comparison code never
care which one ran. The answer, ``Identification``, is a plain frozen record:
it crosses process boundaries (pickled by the worker pool), goes into PREMIS as
a ``format identification`` event, and carries its own uncertainty (no match,
several candidates, a timeout) as data rather than as an exception, because one
odd file must never stop the identification of a whole SIP.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

__all__ = ["Basis", "FormatEngine", "Identification"]

Basis = Literal["signature", "container", "extension", "none"]
"""How a format was decided: byte signature, container (ZIP/OLE2) signature,
file name extension only, or not at all."""


@dataclass(frozen=True, slots=True)
class Identification:
    """One file's format, as one engine with one signature release saw it.

    ``puids`` lists every candidate the engine kept (fido can keep several of
    equal priority); the name, version and MIME type describe the first one.
    ``elapsed`` is seconds spent on this file, for spotting slow signatures.
    """

    path: Path
    puids: tuple[str, ...]
    format_name: str | None
    format_version: str | None
    mime: str | None
    basis: Basis
    engine: str
    engine_version: str
    signature_release: str
    warning: str | None = None
    error: str | None = None
    elapsed: float = 0.0

    @property
    def known(self) -> bool:
        """True when the engine ran to completion and named at least one format."""
        return self.error is None and bool(self.puids)

    @property
    def puid(self) -> str | None:
        """The chosen PRONOM id, or None when nothing was identified."""
        return self.puids[0] if self.puids else None

    @classmethod
    def failed(
        cls,
        path: Path,
        *,
        engine: str,
        engine_version: str,
        signature_release: str,
        error: str,
        elapsed: float = 0.0,
    ) -> Identification:
        """A file the engine could not finish: recorded, not raised."""
        return cls(
            path=Path(path),
            puids=(),
            format_name=None,
            format_version=None,
            mime=None,
            basis="none",
            engine=engine,
            engine_version=engine_version,
            signature_release=signature_release,
            error=error,
            elapsed=elapsed,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (PREMIS writers and bench reports use it)."""
        out = asdict(self)
        out["path"] = str(self.path)
        out["puids"] = list(self.puids)
        out["known"] = self.known
        return out


@runtime_checkable
class FormatEngine(Protocol):
    """A format identifier with its signatures loaded, ready for many files.

    Loading signatures is the expensive part (fido parses ~4 MB of XML and
    compiles ~2,300 regular expressions), so an engine object is built once per
    process and then fed batches. ``identify_batch`` returns one result per path,
    in the same order, and never raises for a single bad file.
    """

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...

    @property
    def signature_release(self) -> str: ...

    def identify_batch(self, paths: Sequence[Path]) -> list[Identification]: ...
