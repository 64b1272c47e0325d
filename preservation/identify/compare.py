"""Line up two or more engines' results file by file, as siegfried's ``sf -compare`` does.

Engines disagree (different PRONOM releases, different priority rules, fido's
extension fallback vs. siegfried's "UNKNOWN"), and a curator choosing an
engine, or upgrading signatures, needs to see exactly which files change
answer. This is a pure function over results, so it works on stored results too.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from preservation.identify.interfaces import Identification

__all__ = ["Comparison", "compare", "summarise"]


@dataclass(frozen=True, slots=True)
class Comparison:
    """One file as every run saw it; ``None`` where a run has no result for the file."""

    path: Path
    results: tuple[Identification | None, ...]

    @property
    def puids(self) -> tuple[tuple[str, ...] | None, ...]:
        return tuple(r.puids if r is not None else None for r in self.results)

    @property
    def agree(self) -> bool:
        """Every run has the file and names the same set of PUIDs."""
        sets = [frozenset(r.puids) if r is not None else None for r in self.results]
        return None not in sets and len(set(sets)) == 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "agree": self.agree,
            "results": [
                None
                if r is None
                else {
                    "engine": r.engine,
                    "puids": list(r.puids),
                    "basis": r.basis,
                    "known": r.known,
                }
                for r in self.results
            ],
        }


def compare(*runs: Sequence[Identification]) -> list[Comparison]:
    """Comparisons in the order files first appear across ``runs``."""
    by_path: list[dict[Path, Identification]] = [{r.path: r for r in run} for run in runs]
    order: dict[Path, None] = {}
    for run in runs:
        order.update(dict.fromkeys(r.path for r in run))
    return [Comparison(path, tuple(m.get(path) for m in by_path)) for path in order]


def summarise(comparisons: Sequence[Comparison]) -> dict[str, Any]:
    """Counts for a report: agreement, and the commonest disagreements by PUID."""
    disagreements = Counter(
        " vs ".join(",".join(p) if p is not None else "-" for p in c.puids)
        for c in comparisons
        if not c.agree
    )
    return {
        "files": len(comparisons),
        "agree": sum(c.agree for c in comparisons),
        "disagree": sum(not c.agree for c in comparisons),
        "top_disagreements": dict(disagreements.most_common(10)),
    }
