"""The describe stage: the AIP id and the version's METS + PREMIS documents."""

from __future__ import annotations

from preservation import SOFTWARE_AGENT, __version__
from preservation.catalog import SIPState, Tenant, service
from preservation.catalog.database import session_scope
from preservation.context import Context
from preservation.failpoints import failpoint
from preservation.ingest.staging import (
    aip_dir,
    sip_bag_dir,
)

# -- stage 5: describe ------------------------------------------------------------------------


def describe(ctx: Context, sip_id: str) -> None:
    """Give the SIP its AIP id and write the version's METS + PREMIS documents."""
    from preservation.aip import AIPLayout, copy_schemas, copy_submission
    from preservation.metadata.description import describe_package

    with session_scope(ctx.sessions) as s:
        sip = service.get_sip(s, sip_id)
        if sip.state is not SIPState.CHARACTERISED:
            return
        aip = service.create_aip(s, sip)
        tenant = s.get(Tenant, sip.tenant_id)
        files = service.list_files(s, sip_id=sip_id)
        # The METS must tell its own ingest: the event is recorded here, in the
        # transaction that writes it, and completed by a second at commit.
        service.record_event(
            s,
            tenant_id=sip.tenant_id,
            sip_id=sip_id,
            aip_id=aip.id,
            type="ingestion",
            outcome="success",
            detail=f"ingestion started: bag {sip.name!r} accepted as AIP {aip.id} version 1",
            outcome_detail="the AIP is active once both tape copies are verified",
            agents={"executing program": [SOFTWARE_AGENT]},
        )
        events = service.list_events(s, sip_id=sip_id)
        agents = service.agents_by_identifier(s)
        layout = AIPLayout(aip_dir(ctx, sip_id))
        layout.create()
        copy_submission(sip_bag_dir(ctx, sip), layout)
        copy_schemas(ctx.settings.schemas_dir, layout)
        describe_package(
            layout,
            aip_id=aip.id,
            version=1,
            tenant=sip.tenant_id,
            organisation=tenant.name if tenant else sip.tenant_id,
            bag_info=sip.bag_info,
            files=files,
            events=events,
            agents=agents,
        )
        failpoint("describe")
        service.ensure_agent(
            s, SOFTWARE_AGENT, name="preservation", type="software", version=__version__
        )
        service.set_sip_state(s, sip, SIPState.DESCRIBED)
