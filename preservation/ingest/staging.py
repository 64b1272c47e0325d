"""Where a SIP's files are while it is ingested.

Staging area of one SIP (``<home>/staging/<sip-id>/``)::

    unpacked/                  a serialised bag, unpacked safely
    aip/                       the AIP version 1 bag being built (docs/architecture.md §4)
      data/representations/rep1/data/...   payload, copied once during `validate`
    <aip-id>.v1.tar            the serialised AIP, written by `package`
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from preservation.catalog import SIP
from preservation.context import Context

SERIALISED_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".zip")

Progress = Callable[[str, int, int], None]  # (what, done, total)


def no_progress(_what: str, _done: int, _total: int) -> None:
    return None


def staging_dir(ctx: Context, sip_id: str) -> Path:
    return ctx.settings.staging_dir / sip_id


def aip_dir(ctx: Context, sip_id: str) -> Path:
    return staging_dir(ctx, sip_id) / "aip"


def is_serialised(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(SERIALISED_SUFFIXES)


def bag_name(path: Path) -> str:
    name = path.name
    for suffix in SERIALISED_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def sip_bag_dir(ctx: Context, sip: SIP) -> Path:
    """The bag directory to read: the submitted one, or the safely unpacked one."""
    source = Path(sip.source_path)
    if is_serialised(source):
        from preservation.sip import open_serialised_bag

        unpacked = staging_dir(ctx, sip.id) / "unpacked"
        marker = unpacked / ".complete"
        if marker.exists():
            return Path(marker.read_text())
        shutil.rmtree(unpacked, ignore_errors=True)
        unpacked.mkdir(parents=True)
        root = open_serialised_bag(
            source,
            unpacked,
            max_bytes=ctx.settings.unpack_max_bytes,
            max_members=ctx.settings.unpack_max_members,
            max_ratio=ctx.settings.unpack_max_ratio,
        )
        marker.write_text(str(root))
        return root
    return source
