"""Copying a validated payload into the staging area, verified in the same read.

Staging is where a wrong byte would become permanent: what lands here is what
goes to tape. So a file is written under a temporary name and renamed only when
its bytes matched every digest of the bag's manifests, and the AIP digests
(sha256, sha512) come from that same read, reusing the bag's own hashers when it
already uses those algorithms.
"""

from __future__ import annotations

from pathlib import Path

from preservation.errors import FixityMismatchError, InvalidSIPError
from preservation.sip.validation import StagedFile, validate_and_stage

__all__ = ["StagedFile", "stage_payload"]

_FIXITY_RULES = {"manifest-digest-mismatch", "tagmanifest-digest-mismatch", "file-changed"}


def stage_payload(
    bag_dir: Path, dest_dir: Path, *, processes: int = 2, fsync: bool = False
) -> list[StagedFile]:
    """Copy ``data/...`` of ``bag_dir`` into ``dest_dir`` (same relative paths), verified.

    Raises FixityMismatchError naming the files whose bytes do not match the bag's
    manifests, InvalidSIPError for any other reason the bag cannot be staged. In
    both cases no staged file is left behind and the bag itself is not modified.
    """
    report, staged = validate_and_stage(bag_dir, dest_dir, processes=processes, fsync=fsync)
    if report.valid:
        return staged
    fixity = [p for p in report.errors if p.rule in _FIXITY_RULES]
    if fixity and len(fixity) == len(report.errors):
        files = sorted({p.file for p in fixity if p.file})
        raise FixityMismatchError(
            f"{len(files)} file(s) of bag {Path(bag_dir).name} do not match their "
            f"recorded digests: {', '.join(files)}",
            path=Path(bag_dir) / files[0] if files else bag_dir,
            files=files,
            problems=[p.to_dict() for p in fixity],
        )
    raise InvalidSIPError(
        f"bag {Path(bag_dir).name} cannot be staged: {report.errors[0].message}",
        path=bag_dir,
        problems=report.problems,
    )
