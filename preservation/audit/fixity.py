"""One fixity audit over the copies on tape, shared by the CLI and the audit worker.

The verdicts are recorded where they are needed by ``audit_copy`` itself: a
PREMIS ``fixity check`` event per copy, a failed copy marked FAILED so that
``preservation repair`` replaces it. A copy whose site is down or whose drive
or cartridge is held elsewhere is *skipped*: no verdict, the next audit reads
it. What this module adds is the order (cartridge by cartridge, in tape
position, so a cartridge is mounted once per audit) and the summary.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from preservation.context import Context
from preservation.errors import DeviceBusyError, SiteUnavailableError

__all__ = ["AuditReport", "CopyVerdict", "audit_copies", "plan_audit"]


@dataclass(frozen=True)
class CopyVerdict:
    copy_id: int
    aip_id: str
    version: int
    site: str
    barcode: str
    path: str
    result: str  # "ok", "failed" or "skipped"
    detail: str


@dataclass
class AuditReport:
    site: str | None
    copies: list[CopyVerdict] = field(default_factory=list)

    @property
    def failed(self) -> list[CopyVerdict]:
        return [c for c in self.copies if c.result == "failed"]

    @property
    def skipped(self) -> list[CopyVerdict]:
        return [c for c in self.copies if c.result == "skipped"]

    @property
    def clean(self) -> bool:
        """Every copy read and matched: nothing failed, nothing left unread."""
        return not self.failed and not self.skipped

    def to_dict(self) -> dict[str, Any]:
        return {
            "site": self.site,
            "ok": self.clean,
            "checked": len(self.copies),
            "matched": len(self.copies) - len(self.failed) - len(self.skipped),
            "failed": [asdict(c) for c in self.failed],
            "skipped": [asdict(c) for c in self.skipped],
            "copies": [asdict(c) for c in self.copies],
        }


def plan_audit(ctx: Context, site: str | None = None) -> list[dict[str, Any]]:
    """The verified copies to read, cartridge by cartridge, each in tape order."""
    from preservation.storage.service import list_cartridges, show_cartridge

    plan: list[dict[str, Any]] = []
    for cartridge in list_cartridges(ctx, site):
        if cartridge["copies"].get("verified"):
            contents = show_cartridge(ctx, cartridge["barcode"])["contents"]
            plan.extend(c for c in contents if c["status"] == "verified")
    return plan


def audit_copies(
    ctx: Context,
    site: str | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> AuditReport:
    """Read back every verified copy (of one site, or all) and return the verdicts."""
    from preservation.storage.recovery import audit_copy

    plan = plan_audit(ctx, site)
    report = AuditReport(site=site)
    if progress:
        progress(0, len(plan))
    for done, copy in enumerate(plan, 1):
        try:
            verdict = audit_copy(ctx, copy["id"])
            result, detail = ("ok" if verdict.ok else "failed"), verdict.detail
        except (SiteUnavailableError, DeviceBusyError) as err:
            result, detail = "skipped", err.message  # not audited: not a verdict
        report.copies.append(
            CopyVerdict(
                copy_id=copy["id"],
                aip_id=copy["aip_id"],
                version=copy["version"],
                site=copy["site"],
                barcode=copy["barcode"],
                path=copy["path"],
                result=result,
                detail=detail,
            )
        )
        if progress:
            progress(done, len(plan))
    return report
