"""The scan and characterise stages in the real Celery workers, fed by the hot folder.

The workers are processes of their own, started the way compose.yaml starts
them: they reach clamd only through ``PRESERVATION_CLAMD_SOCKET``, inherited
from the environment the session's ``virus_scanner`` fixture set, exactly as a
deployment hands it to them. One cluster takes an infected bag and a clean
one side by side: the first must end rejected at ``scan`` with nothing on
tape, the second committed with its virus check, its tools' and validators'
events in the tenant's chain.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import bagit  # type: ignore[import-untyped]
from sqlalchemy import select

from preservation.catalog import SIP, AIPVersion, SIPState, TapeCopy, service
from tests.scanning import EICAR, EICAR_SIGNATURE, require_clamd
from workers.localcluster import SAMPLE, Cluster

EICAR_FILE = "data/downloads/eicar.com"


def _eicar_bag(root: Path) -> Path:
    """The sample bag with the EICAR test file added, its manifests made again."""
    bag_dir = root / "downloads"
    shutil.copytree(SAMPLE, bag_dir)
    (bag_dir / EICAR_FILE).parent.mkdir(parents=True)
    (bag_dir / EICAR_FILE).write_bytes(EICAR)
    bagit.Bag(str(bag_dir)).save(manifests=True)
    return bag_dir


def test_workers_reject_an_infected_drop_at_scan_and_characterise_a_clean_one(
    cluster: Cluster, tmp_path: Path
) -> None:
    require_clamd()
    assert os.environ.get("PRESERVATION_CLAMD_SOCKET"), "the session's clamd is not configured"
    infected = _eicar_bag(tmp_path / "bags")
    cluster.start_all()
    cluster.drop_bag("museum", "downloads", source=infected)
    cluster.drop_bag("museum", "sample")

    def settled() -> bool:
        counts = cluster.counts()
        return (
            sum(counts.get(state.value, 0) for state in (SIPState.COMMITTED, SIPState.REJECTED))
            >= 2
        )

    cluster.wait_for(settled, timeout=180, what="both bags committed or rejected")
    assert cluster.counts() == {SIPState.COMMITTED.value: 1, SIPState.REJECTED.value: 1}

    rejected = cluster.home / "ingest" / "museum" / "rejected" / "downloads"
    report = json.loads((rejected / "report.json").read_text())
    assert report["stage"] == "scan"
    [problem] = report["problems"]
    assert (problem["rule"], problem["file"], problem["signature"]) == (
        "virus-found",
        EICAR_FILE,
        EICAR_SIGNATURE,
    )
    assert (rejected / "downloads" / EICAR_FILE).read_bytes() == EICAR  # set aside as it came

    with cluster.sessions() as s:
        sips = {sip.name: sip for sip in s.scalars(select(SIP))}
        bad, good = sips["downloads"], sips["sample"]
        assert bad.state is SIPState.REJECTED and bad.aip_id is None
        assert good.state is SIPState.COMMITTED and good.aip_id
        # Nothing of the infected bag on tape: the one version and its copies are the clean AIP's.
        versions = list(s.scalars(select(AIPVersion)))
        assert [v.aip_id for v in versions] == [good.aip_id]
        copies = list(s.scalars(select(TapeCopy)))
        assert {c.aip_version_id for c in copies} == {versions[0].id}

        def events(sip_id: str, kind: str) -> list[Any]:
            return [e for e in service.list_events(s, sip_id=sip_id) if e.type == kind]

        [failed] = events(bad.id, "virus check")
        assert failed.outcome == "failure" and "ClamAV" in failed.detail
        assert events(bad.id, "format identification") == []

        [check] = events(good.id, "virus check")
        assert check.outcome == "success" and "ClamAV" in check.detail
        extraction = events(good.id, "metadata extraction")
        tools = {e.agents["executing program"][0].split(" ")[0] for e in extraction}
        assert {"exiftool", "mediainfo"} <= tools
        assert all(e.outcome == "success" for e in extraction)
        validators = {
            e.agents["executing program"][0].split(" ")[0]: e
            for e in events(good.id, "validation")
            if "results_sha256" in (e.objects or {})
        }
        assert {"pillow", "qpdf", "ffmpeg", "xml"} <= set(validators)
        files = service.list_files(s, sip_id=good.id)
        assert any(f.properties for f in files) and all(f.valid is not False for f in files)
        assert service.verify_event_chain(s, "museum") == []
    assert set(cluster.verified_copies().values()) == {2}
