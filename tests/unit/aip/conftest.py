"""Build a real AIP version 1 from ``examples/bags/sample-collection``.

Staging is imitated the way the pipeline does it: copy each original into
``rep1/data`` and record its sha256 and sha512 from that one read. METS and
schemas are placeholders: the AIP package only carries those files, it does not
write them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import bagit
import pytest

from preservation.aip import AIPLayout, BagSummary, copy_schemas, copy_submission, write_aip_bag

ROOT = Path(__file__).resolve().parents[3]
SAMPLE = ROOT / "examples" / "bags" / "sample-collection"
AIP_ID = "6f1c2a7e-3b8d-4e0f-9a51-2c7d8e9f0a1b"
BAGGING_DATE = dt.date(2024, 6, 1)
FIXED_MTIME = 1717200000


@dataclass
class BuiltAIP:
    layout: AIPLayout
    known_digests: dict[str, dict[str, str]]
    summary: BagSummary
    sip_info: dict[str, list[str]]


def stage_originals(sip: Path, layout: AIPLayout) -> dict[str, dict[str, str]]:
    """Copy the SIP payload into rep1/data, hashing each file from the same read."""
    known: dict[str, dict[str, str]] = {}
    payload = sip / "data"
    for src in sorted(p for p in payload.rglob("*") if p.is_file()):
        rel = src.relative_to(payload).as_posix()
        data = src.read_bytes()
        dest = layout.original(rel)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
        shutil.copystat(src, dest)
        known[layout.original_bag_path(rel)] = {
            "sha256": hashlib.sha256(data).hexdigest(),
            "sha512": hashlib.sha512(data).hexdigest(),
        }
    return known


def placeholder_xml(path: Path, root: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'<?xml version="1.0" encoding="UTF-8"?>\n<{root}/>\n', encoding="utf-8")


def prepare(aip_dir: Path, schemas_dir: Path) -> tuple[AIPLayout, dict[str, dict[str, str]]]:
    layout = AIPLayout(aip_dir).create()
    known = stage_originals(SAMPLE, layout)
    placeholder_xml(layout.root_mets, "mets")
    placeholder_xml(layout.representation_mets, "mets")
    placeholder_xml(layout.descriptive / "dc.xml", "dc")
    placeholder_xml(layout.preservation / "premis.xml", "premis")
    copy_submission(SAMPLE, layout)
    copy_schemas(schemas_dir, layout)
    return layout, known


@pytest.fixture
def schemas_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "schemas"
    placeholder_xml(folder / "mets.xsd", "schema")
    placeholder_xml(folder / "premis" / "premis-v3-0.xsd", "schema")
    (folder / "tenant-rules.schema.json").write_text("{}", encoding="utf-8")
    return folder


BuildAIP = Callable[..., BuiltAIP]


@pytest.fixture
def build_aip(tmp_path: Path, schemas_dir: Path) -> BuildAIP:
    """Factory: a fresh, bagged AIP in its own folder each call."""
    counter = iter(range(1000))

    def build(
        *, tamper: Callable[[dict[str, dict[str, str]]], None] | None = None, **kw: object
    ) -> BuiltAIP:
        aip_dir = tmp_path / f"build{next(counter)}" / f"{AIP_ID}.v1"
        layout, known = prepare(aip_dir, schemas_dir)
        if tamper is not None:
            tamper(known)
        sip_info = {
            k: v if isinstance(v, list) else [v] for k, v in bagit.Bag(str(SAMPLE)).info.items()
        }
        args: dict[str, object] = dict(
            aip_id=AIP_ID,
            version=1,
            tenant="demo",
            source_bag_name="sample-collection",
            bag_info=sip_info,
            known_digests=known,
            bagging_date=BAGGING_DATE,
        )
        args.update(kw)
        summary = write_aip_bag(aip_dir, **args)  # type: ignore[arg-type]
        return BuiltAIP(layout, known, summary, sip_info)

    return build
