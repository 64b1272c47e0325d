"""What a validation found, as records a curator, the CLI and the API can all read.

Validation never stops at the first problem: a depositor who fixes one thing and
resubmits only to learn of the next wastes a week. So every check appends a
:class:`Problem` and the caller decides what to do with the whole list.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from preservation.errors import InvalidSIPError

__all__ = ["Problem", "Severity", "ValidationReport"]

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class Problem:
    """One broken rule.

    ``rule`` is a short stable id (``manifest-digest-mismatch``) for machines and
    tests; ``message`` is for people. ``section`` points at RFC 8493 when the rule
    comes from it, and is None for our own safety rules.
    """

    severity: Severity
    rule: str
    message: str
    file: str | None = None
    section: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "severity": self.severity,
            "rule": self.rule,
            "file": self.file,
            "message": self.message,
            "rfc8493": self.section,
        }

    def to_text(self) -> str:
        where = f" {self.file}:" if self.file else ""
        ref = f" (RFC 8493 §{self.section})" if self.section else ""
        return f"{self.severity.upper():7} [{self.rule}]{where} {self.message}{ref}"


@dataclass(slots=True)
class ValidationReport:
    """Every problem found in one bag, plus the figures a curator asks for first."""

    bag: Path
    problems: list[Problem] = field(default_factory=list)
    version: str | None = None
    algorithms: list[str] = field(default_factory=list)
    files_hashed: int = 0
    bytes_hashed: int = 0

    @property
    def valid(self) -> bool:
        return not any(p.severity == "error" for p in self.problems)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    def rules(self) -> set[str]:
        """The ids of every rule broken; handy when one only needs to ask 'was X found?'."""
        return {p.rule for p in self.problems}

    def error(
        self, rule: str, message: str, file: str | None = None, section: str | None = None
    ) -> None:
        self.problems.append(Problem("error", rule, message, file, section))

    def warn(
        self, rule: str, message: str, file: str | None = None, section: str | None = None
    ) -> None:
        self.problems.append(Problem("warning", rule, message, file, section))

    def to_dict(self) -> dict[str, Any]:
        return {
            "bag": str(self.bag),
            "valid": self.valid,
            "bagit_version": self.version,
            "algorithms": list(self.algorithms),
            "files_hashed": self.files_hashed,
            "bytes_hashed": self.bytes_hashed,
            "error_count": len(self.errors),
            "warning_count": len(self.warnings),
            "problems": [p.to_dict() for p in self.problems],
        }

    def to_text(self) -> str:
        verdict = "VALID" if self.valid else "INVALID"
        head = (
            f"Bag {self.bag}: {verdict} "
            f"({len(self.errors)} error(s), {len(self.warnings)} warning(s))"
        )
        lines = [head]
        # Errors first: they are why the bag was refused.
        for p in sorted(self.problems, key=lambda p: p.severity != "error"):
            lines.append("  " + p.to_text())
        return "\n".join(lines) + "\n"

    def raise_if_invalid(self) -> None:
        """Turn a refused bag into the pipeline's exception, carrying every problem."""
        if not self.valid:
            first = self.errors[0]
            raise InvalidSIPError(
                f"bag {self.bag.name} is not valid: {len(self.errors)} error(s), "
                f"first: {first.message}",
                path=self.bag,
                problems=self.problems,
            )
