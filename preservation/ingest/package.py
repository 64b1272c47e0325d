"""The package stage: the described AIP as a BagIt bag in one pax tar."""

from __future__ import annotations

import shutil

from preservation import SOFTWARE_AGENT
from preservation.catalog import AIPVersion, SIPState, service
from preservation.catalog.database import session_scope
from preservation.context import Context
from preservation.failpoints import failpoint
from preservation.ingest.staging import (
    aip_dir,
    staging_dir,
)

# -- stage 6: package --------------------------------------------------------------------------


def package(ctx: Context, sip_id: str) -> None:
    """Make the described AIP folder a BagIt bag and serialise it as one pax tar."""
    from preservation.aip import (
        AIPLayout,
        serialise_aip,
        write_aip_bag,
    )
    from preservation.versions import bag_contents

    with session_scope(ctx.sessions) as s:
        sip = service.get_sip(s, sip_id)
        if sip.state is not SIPState.DESCRIBED:
            return
        aip = service.get_aip(s, sip.aip_id or "")
        version = service.create_aip_version(s, aip, 1)
        known = {
            f.aip_path: {"sha256": f.sha256, "sha512": f.sha512}
            for f in service.list_files(s, sip_id=sip_id)
            if f.aip_path
        }
        tenant_id, name, bag_info, aip_id = sip.tenant_id, sip.name, sip.bag_info, aip.id
        version_id = version.id
    layout = AIPLayout(aip_dir(ctx, sip_id))
    summary = write_aip_bag(
        layout.root,
        aip_id=aip_id,
        version=1,
        tenant=tenant_id,
        source_bag_name=name,
        bag_info=bag_info,
        known_digests=known,
        processes=2,
    )
    tar_path = staging_dir(ctx, sip_id) / f"{aip_id}.v1.tar"
    tar = serialise_aip(
        layout.root,
        tar_path,
        arcname=f"{aip_id}.v1",
        expected_sha256={path: d["sha256"] for path, d in known.items() if d["sha256"]},
    )
    failpoint("package")
    # What the next version's METS points to (preservation/versions.py), kept
    # while the folder still exists: no tape is read to make a new version.
    contents = bag_contents(layout.root, 1, summary.digests)
    with session_scope(ctx.sessions) as s:
        sip = service.get_sip(s, sip_id)
        version = s.get_one(AIPVersion, version_id)
        version.tar_size = tar.size
        version.tar_sha256 = tar.sha256
        version.mets_sha256 = summary.digests.get("data/METS.xml", {}).get("sha256")
        version.staging_path = str(tar.path)
        service.assign_files_to_version(s, sip_id, version_id)
        service.record_event(
            s,
            tenant_id=tenant_id,
            sip_id=sip_id,
            aip_id=aip_id,
            type="creation",
            outcome="success",
            detail=f"AIP version 1 packaged as a POSIX pax tar ({summary.payload_files} files)",
            outcome_detail=f"sha256 {tar.sha256}, {tar.size} bytes",
            agents={"executing program": [SOFTWARE_AGENT]},
            objects={"version": 1, "contents": contents},
        )
        service.set_sip_state(s, sip, SIPState.PACKAGED)
    # The tar is the package now; the unpacked folder would only double the staging space.
    shutil.rmtree(layout.root, ignore_errors=True)
