"""From catalogue rows to the two METS documents of an AIP version.

The describe stage hands over what the catalogue knows (files with their
digests and formats, the SIP's events, the agents); this module maps it onto
the plain metadata model and writes the representation METS, then the root
METS that points to it. Catalogue identifiers become METS-local ids here and
only here.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from preservation import __version__
from preservation.aip import AIPLayout
from preservation.metadata.mets import write_representation_mets, write_root_mets
from preservation.metadata.model import (
    Agent,
    AgentLink,
    Event,
    FileFormat,
    FileObject,
    FileRef,
    PackageDescription,
    RepresentationRef,
)
from preservation.sip.baginfo import first_tag

__all__ = ["describe_package"]

SOFTWARE_ID = "agent-preservation"
ORGANISATION_ID = "agent-organisation"
SUBMITTER_ID = "agent-submitter"


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _agents(
    tenant: str,
    organisation: str,
    bag_info: Mapping[str, list[str]],
    catalog_agents: Mapping[str, Any],
    used: set[str],
) -> tuple[tuple[Agent, ...], dict[str, str]]:
    """METS agents, and a map from catalogue agent identifiers to their METS ids."""
    agents = [
        Agent(SOFTWARE_ID, "preservation", "software", version=__version__),
        Agent(ORGANISATION_ID, organisation, "organization", note=f"tenant {tenant}"),
    ]
    ids = {f"preservation {__version__}": SOFTWARE_ID}
    source_org = first_tag(bag_info, "Source-Organization")
    contact = first_tag(bag_info, "Contact-Name")
    if contact or source_org:
        agents.append(
            Agent(
                SUBMITTER_ID,
                contact or source_org or "",
                "person" if contact else "organization",
                note=f"submitter, {source_org}" if contact and source_org else "submitter",
            )
        )
    for n, identifier in enumerate(sorted(used - set(ids)), start=1):
        row = catalog_agents.get(identifier)
        agent_id = f"agent-tool-{n}"
        name, _, version = identifier.partition(" ")
        agents.append(
            Agent(
                agent_id,
                row.name if row is not None else name,
                "software",
                version=(row.version if row is not None else version) or None,
            )
        )
        ids[identifier] = agent_id
    return tuple(agents), ids


def _events(rows: Sequence[Any], agent_ids: Mapping[str, str]) -> tuple[Event, ...]:
    out = []
    for e in rows:
        links = tuple(
            AgentLink(agent_ids[identifier], role)
            for role, identifiers in (e.agents or {}).items()
            for identifier in identifiers
            if identifier in agent_ids
        ) + (AgentLink(ORGANISATION_ID, "authorizer"),)
        out.append(
            Event(
                id=UUID(e.uuid),
                type=e.type,
                datetime=_aware(e.occurred_at),
                outcome=e.outcome,
                agents=links,
                detail=e.detail or None,
                outcome_detail=e.outcome_detail or None,
            )
        )
    return tuple(out)


def _files(rows: Sequence[Any], event_ids: tuple[UUID, ...]) -> Iterator[FileObject]:
    for n, f in enumerate(rows, start=1):
        ident = f.identification or {}
        digests = {"sha256": f.sha256, "sha512": f.sha512}
        for alg, value in (f.submitted_digests or {}).items():
            digests.setdefault(alg, value.lower())
        yield FileObject(
            id=f"file-{n:06d}",
            original_name=f.original_name,
            path=(f.aip_path or "").removeprefix("data/"),
            size=f.size,
            digests=digests,
            format=FileFormat(
                puids=tuple(ident.get("puids") or ([f.puid] if f.puid else [])),
                name=f.format_name,
                version=f.format_version,
                mime=f.mime,
                basis=f.identification_basis,
                tool=" ".join(x for x in (ident.get("engine"), ident.get("engine_version")) if x)
                or None,
            ),
            event_ids=event_ids,
        )


def describe_package(
    layout: AIPLayout,
    *,
    aip_id: str,
    version: int,
    tenant: str,
    organisation: str,
    bag_info: Mapping[str, list[str]],
    files: Sequence[Any],
    events: Sequence[Any],
    agents: Mapping[str, Any],
) -> None:
    """Write ``representations/<rep>/METS.xml`` and ``METS.xml`` into ``layout``."""
    used = {i for e in events for ids in (e.agents or {}).values() for i in ids}
    mets_agents, agent_ids = _agents(tenant, organisation, bag_info, agents, used)
    package_events = _events(events, agent_ids)
    package = PackageDescription(
        aip_id=UUID(aip_id),
        version=version,
        tenant=tenant,
        organisation=organisation,
        created=datetime.now(UTC),
        bag_info={k: list(v) for k, v in bag_info.items()},
        representation=layout.representation,
        agents=mets_agents,
        events=package_events,
    )
    write_representation_mets(
        layout.representation_mets, package, _files(files, tuple(e.id for e in package_events))
    )
    schemas = [
        FileRef.from_file(layout.bag_path(p).removeprefix("data/"), p, mime="application/xml")
        for p in sorted(layout.schemas.glob("*.xsd"))
    ]
    write_root_mets(
        layout.root_mets,
        package,
        [RepresentationRef.from_file(layout.representation, version, layout.representation_mets)],
        schemas=schemas,
    )
