"""Proof that a folder was left as it came: one digest of its names, modes and bytes."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def tree_digest(path: Path) -> str:
    """Names, modes and bytes of every file under ``path``, in a fixed order.

    Tests take it before and after a rejection or a failed stage: the original
    a submitter dropped must be untouched, down to a permission bit.
    """
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in sorted(os.walk(path)):
        dirnames.sort()
        for name in sorted(filenames):
            p = Path(dirpath) / name
            h.update(str(p.relative_to(path)).encode())
            h.update(p.read_bytes())
            h.update(oct(p.stat().st_mode).encode())
    return h.hexdigest()
