"""SIARD archives described from their own metadata: the ``siard`` characterisation tool.

A SIARD archive already says what it holds: ``header/metadata.xml`` names the
database, its source DBMS, every schema, table (with its row count), column
(with its SQL:2008 type) and view, with the archivist's descriptions. So the
tool reads that one entry and the zip's listing, never a table's rows:
a database of millions of rows is described in the time its metadata takes
to parse. Whether those counts are true is validation's question
(``validation.py``'s ``siard`` validator counts the rows); here they are
reported as the archive records them.

In-process and file by file, as the other tools' batches are: no process
to start, and the zip's central directory is the only part of the archive
read besides metadata.xml. The archive is opened as everything else here
opens one (``reader.open_siard``): a zip bomb (overlapping entries, sizes no
DEFLATE stream reaches) is refused before anything is inflated, and
metadata.xml is read only up to ``model.MAX_METADATA_BYTES``. LOBs are
counted from the listing (``reader.lob_files``): the distinct files in the
tables' folders other than their XML and XSD, as validation's statistics
count them.

The record per file (``ToolRun.per_file``) is plain JSON::

    {"file": "db.siard", "siard_version": "2.2", "dbname": "...", "description": "...",
     "source_dbms": "SQLite 3.45.1", "producer_application": "...",
     "archival_date": "2024-05-01", "lob_count": 3, "lob_bytes": 120000,
     "schemas": [{"name": "main", "description": null,
                  "tables": [{"name": "person", "description": "...", "rows": 120,
                              "columns": [{"name": "id", "type": "INTEGER",
                                           "description": null}, ...]}],
                  "views": [{"name": "adults", "description": null, "columns": [...]}]}]}

``properties.py`` turns it into the significant properties of kind
``database`` (counts, the source DBMS, and the names and descriptions that
search indexes).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from preservation import SOFTWARE_AGENT
from preservation.characterise.tools import ToolRun, display_name
from preservation.errors import SiardError
from preservation.siard.model import SIARD_VERSION, Archive, Column

__all__ = ["SiardTool", "describe_siard"]

_VERSION_FOLDER = re.compile(r"header/siardversion/([^/]+)/")


def _columns(columns: Sequence[Column]) -> list[dict[str, Any]]:
    return [{"name": c.name, "type": c.type, "description": c.description} for c in columns]


def _record(archive: Archive, version: str | None, lobs: int, lob_bytes: int) -> dict[str, Any]:
    return {
        "siard_version": version,
        "dbname": archive.dbname,
        "description": archive.description,
        "source_dbms": archive.database_product,
        "producer_application": archive.producer_application,
        "archival_date": archive.archival_date.isoformat() if archive.archival_date else None,
        "lob_count": lobs,
        "lob_bytes": lob_bytes,
        "schemas": [
            {
                "name": schema.name,
                "description": schema.description,
                "tables": [
                    {
                        "name": table.name,
                        "description": table.description,
                        "rows": table.rows,
                        "columns": _columns(table.columns),
                    }
                    for table in schema.tables
                ],
                "views": [
                    {
                        "name": view.name,
                        "description": view.description,
                        "columns": _columns(view.columns),
                    }
                    for view in schema.views
                ],
            }
            for schema in archive.schemas
        ],
    }


def describe_siard(path: Path) -> dict[str, Any]:
    """The record of one SIARD archive (see the module docstring).

    Raises ``SiardError`` (rule ``zip``, ``structure``, ``metadata-xsd`` or
    ``xml-entities``) where the archive cannot be described at all.
    """
    from preservation.siard.reader import lob_files, open_siard

    with open_siard(path) as reader:
        archive = reader.archive
        listing = reader.infolist()
    version = None
    for item in listing:
        found = _VERSION_FOLDER.match(item.filename)
        if found is not None:
            version = found.group(1)
            break
    lobs = lob_files(archive, listing)
    lob_bytes = sum(item.file_size for item in lobs)
    return _record(archive, version, len(lobs), lob_bytes)


class SiardTool:
    """``CharacterisationTool`` "siard": the archive's own metadata, read in this process."""

    name = "siard"

    def version(self) -> str:
        return f"{SOFTWARE_AGENT} (SIARD {SIARD_VERSION} metadata reader)"

    def run(self, paths: Sequence[Path], *, names: Sequence[str] | None = None) -> ToolRun:
        """One record per archive; one that cannot be described is an error, not an exception."""
        per_file: list[dict[str, Any]] = []
        document: list[dict[str, Any]] = []
        errors: dict[int, str] = {}
        for index, path in enumerate(paths):
            label = display_name(names[index] if names is not None else str(path))
            try:
                record: dict[str, Any] = {"file": label, **describe_siard(Path(path))}
            except SiardError as err:
                errors[index] = f"{err.message} (rule {err.rule})"
                document.append({"file": label, "error": errors[index]})
                per_file.append({})
                continue
            except OSError as err:
                errors[index] = f"cannot read the file: {err.strerror or err}"
                document.append({"file": label, "error": errors[index]})
                per_file.append({})
                continue
            document.append(record)
            per_file.append(record)
        return ToolRun(self.name, self.version(), document, per_file, errors)

    def close(self) -> None:
        return None
