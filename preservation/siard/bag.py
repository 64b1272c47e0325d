"""A SIARD archive wrapped in a BagIt bag, ready to drop into a tenant's ingest folder.

The bag holds the archive alone, as ``data/<name>.siard`` (``payload_name``:
the file's own name, with ``.siard`` added if it has another suffix, so
format identification and a reader see it for what it is), with sha256 and
sha512 manifests (as the example bags have) and a bag-info that describes the
database from its own ``metadata.xml``: ``Title``, ``External-Description``,
``Source-Organization`` (the archive's ``dataOwner``, when it names one: the
default archiving rules require it), ``Date`` (the archival date) and
``Payload-Oxum``, which the hot folder uses to tell a finished bag from one
still being copied. ``info`` adds labels or overrides these.

The bag is built in a hidden folder beside its destination and renamed into
place when complete, so it can be made directly inside an ingest folder: the
watcher ignores hidden entries, and never sees half a bag.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

from preservation.errors import DestinationError, SiardError
from preservation.siard.model import Archive
from preservation.siard.reader import naming_archive, open_siard

__all__ = ["bag_info_of", "bag_siard", "payload_name"]

CHECKSUMS = ("sha256", "sha512")


def payload_name(siard: Path) -> str:
    """Where ``bag_siard`` puts the archive in the bag: ``data/<name>.siard``.

    ``db.siard`` stays ``data/db.siard``; ``x.zip`` becomes ``data/x.zip.siard``.
    """
    name = siard.name if siard.suffix.lower() == ".siard" else f"{siard.name}.siard"
    return f"data/{name}"


def bag_info_of(archive: Archive) -> dict[str, str]:
    """The bag-info labels that describe a database archive (see the module notes).

    From the archive's own metadata.xml, so a bag made by hand from any SIARD
    arrives described (title, what it holds, owner, date) without the curator
    typing it: ingest shows bag-info, and the default archiving rules ask for
    ``Source-Organization``.
    """
    tables = archive.tables()
    rows = sum(t.rows for _, t in tables)
    what = f"SIARD archive of the database {archive.dbname}"
    if archive.database_product:
        what += f" ({archive.database_product.split(' on ')[0]})"
    what += f": {len(archive.schemas)} schema(s), {len(tables)} table(s), {rows} row(s)"
    if archive.description:
        what += f". {archive.description}"
    info = {
        "Title": f"Database {archive.dbname}",
        "External-Description": " ".join(what.split()),
    }
    if archive.data_owner and archive.data_owner != "(unknown)":
        info["Source-Organization"] = " ".join(archive.data_owner.split())
    if archive.archival_date is not None:
        info["Date"] = archive.archival_date.isoformat()
    return info


def bag_siard(siard: Path, to: Path, *, info: Mapping[str, str] | None = None) -> Path:
    """Make the bag ``to`` holding ``siard`` as its payload; ``to`` must not exist yet.

    Returns ``to``; the archive is at ``to / payload_name(siard)`` in it.

    Raises ``SiardError`` when ``siard`` is not a SIARD archive whose metadata
    can be read, and ``DestinationError`` when ``to`` exists or cannot be made.
    """
    import bagit  # type: ignore[import-untyped]

    siard, to = Path(siard), Path(to)
    if not siard.is_file():
        raise SiardError(f"{siard}: no such file", rule="structure", path=siard)
    with naming_archive(siard), open_siard(siard) as reader:  # zip bombs refused, size bounded
        archive = reader.archive
    if to.exists() or to.is_symlink():
        raise DestinationError(f"{to}: already exists; name a new folder for the bag", path=to)
    if not to.parent.is_dir():
        raise DestinationError(f"{to.parent}: no such folder to make the bag in", path=to)
    labels = bag_info_of(archive)
    labels.update(info or {})
    name = Path(payload_name(siard)).name  # bagit moves it into data/
    try:
        work = Path(tempfile.mkdtemp(prefix=f".{to.name}.", dir=to.parent))
    except OSError as err:
        raise DestinationError(f"{to.parent}: cannot be written: {err}", path=to) from err
    try:
        # A copy, never a hard link: the bag must not change when the original does.
        shutil.copyfile(siard, work / name)
        bagit.make_bag(str(work), dict(labels), processes=1, checksums=list(CHECKSUMS))
        for folder in (work, work / "data"):  # mkdtemp's 0700 would keep the watcher's user out
            os.chmod(folder, 0o755)
        os.rename(work, to)
    except OSError as err:
        shutil.rmtree(work, ignore_errors=True)
        raise DestinationError(f"{to}: the bag cannot be made: {err}", path=to) from err
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return to
