"""From catalogue rows to the metadata documents of an AIP version.

The describe stage hands over what the catalogue knows (files with their
digests and formats, the SIP's events, the agents); this module maps it onto
the plain metadata model and writes the representation METS, the package's
Dublin Core and PREMIS records, then the root METS that points to all of them.
Catalogue identifiers become METS-local ids here and only here.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid5

from preservation import __version__
from preservation.aip import AIPLayout
from preservation.metadata.mets import write_representation_mets, write_root_mets
from preservation.metadata.model import (
    AGENT_TYPES,
    Agent,
    AgentLink,
    Event,
    FileFormat,
    FileObject,
    FileRef,
    MetadataRef,
    ObjectLink,
    PackageDescription,
    RepresentationRef,
    representation_identifier,
)
from preservation.metadata.records import write_dublin_core, write_package_premis
from preservation.sip.baginfo import first_tag

__all__ = ["describe_metadata_version", "describe_migration_version", "describe_package"]

SOFTWARE_ID = "agent-preservation"
ORGANISATION_ID = "agent-organisation"
SUBMITTER_ID = "agent-submitter"
#: Package events about the representation's content rather than the package as a
#: whole; they link to the representation's PREMIS object, not the AIP's.
REPRESENTATION_EVENTS = frozenset(
    {"fixity check", "message digest calculation", "format identification"}
)


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
        name, _, version = identifier.partition(" ")
        # A person who asked for a change (a metadata update) is a person, not a tool.
        kind = getattr(row, "type", None)
        kind = kind if kind in AGENT_TYPES else "software"
        agent_id = f"agent-{'tool' if kind == 'software' else kind}-{n}"
        agents.append(
            Agent(
                agent_id,
                row.name if row is not None else name,
                kind,
                version=(row.version if row is not None else version) or None,
            )
        )
        ids[identifier] = agent_id
    return tuple(agents), ids


def _events(
    rows: Sequence[Any], agent_ids: Mapping[str, str], representation_id: str
) -> tuple[Event, ...]:
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
                objects=(
                    (ObjectLink(representation_id),) if e.type in REPRESENTATION_EVENTS else ()
                ),
                detail=e.detail or None,
                outcome_detail=e.outcome_detail or None,
            )
        )
    return tuple(out)


def _file_id(n: int) -> str:
    return f"file-{n:06d}"


def _tool(ident: Mapping[str, Any]) -> str | None:
    """The engine as the identify stage names its agent: ``"<engine> <version>"``."""
    return " ".join(x for x in (ident.get("engine"), ident.get("engine_version")) if x) or None


def _validator(verdict: Mapping[str, Any]) -> str:
    """A validator as the characterise stage names its agent: ``"<tool> <version>"``."""
    return f"{verdict.get('tool')} {verdict.get('version')}"


def _file_events(
    rows: Sequence[Any],
    aip_id: UUID,
    agent_ids: Mapping[str, str],
    when: datetime,
    validated_at: datetime | None = None,
) -> dict[int, list[Event]]:
    """Each file's own events: a doubtful identification, and every format validation.

    An identification event only where it failed or drew a warning: a clean
    result is covered by the package's own event, and an event for each of
    100,000 files would triple the METS. A validation event for every verdict,
    failed or not: whether a file was found well-formed, by which tool and
    version, is exactly what a later reader must be able to see per file. Ids
    are derived from the AIP and the file, so re-running describe writes the
    same events.
    """
    out: dict[int, list[Event]] = {}
    for n, f in enumerate(rows, start=1):
        own: list[Event] = []
        ident = f.identification or {}
        error, warning = ident.get("error"), ident.get("warning")
        if error or warning:
            tool = _tool(ident)
            release = ident.get("signature_release")
            own.append(
                Event(
                    id=uuid5(aip_id, f"format identification/{_file_id(n)}"),
                    type="format identification",
                    datetime=when,
                    outcome="failure" if error else "warning",
                    agents=(
                        AgentLink(agent_ids.get(tool or "", SOFTWARE_ID), "executing program"),
                    ),
                    objects=(ObjectLink(_file_id(n)),),
                    detail=f"{tool} (signatures {release})" if tool and release else tool,
                    outcome_detail=error or warning,
                )
            )
        for verdict in getattr(f, "validation", None) or []:
            tool = _validator(verdict)
            valid = verdict.get("valid")
            own.append(
                Event(
                    id=uuid5(aip_id, f"validation/{verdict.get('tool')}/{_file_id(n)}"),
                    type="validation",
                    datetime=validated_at or when,
                    outcome="success" if valid else "failure" if valid is False else "warning",
                    agents=(AgentLink(agent_ids.get(tool, SOFTWARE_ID), "executing program"),),
                    objects=(ObjectLink(_file_id(n)),),
                    detail=f"format validation with {tool}",
                    outcome_detail=verdict.get("message")
                    or ("well-formed" if valid else "not checked" if valid is None else None),
                )
            )
        if own:
            out[n] = own
    return out


def _files(
    rows: Sequence[Any], event_ids: tuple[UUID, ...], own_events: Mapping[int, list[Event]]
) -> Iterator[FileObject]:
    for n, f in enumerate(rows, start=1):
        ident = f.identification or {}
        digests = {"sha256": f.sha256, "sha512": f.sha512}
        for alg, value in (f.submitted_digests or {}).items():
            digests.setdefault(alg, value.lower())
        own = own_events.get(n, [])
        yield FileObject(
            id=_file_id(n),
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
                tool=_tool(ident),
                error=ident.get("error") or None,
                warning=ident.get("warning") or None,
            ),
            event_ids=event_ids + tuple(e.id for e in own),
            properties=dict(getattr(f, "properties", None) or {}),
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
    """Write the version's metadata into ``layout``; the root ``METS.xml`` last.

    In order: ``representations/<rep>/METS.xml``, ``metadata/descriptive/dc.xml``,
    ``metadata/preservation/premis.xml``, then ``METS.xml``, which records the
    digests of the others; the bag manifests pick them all up when the
    package stage hashes what staging did not.
    """
    used = {i for e in events for ids in (e.agents or {}).values() for i in ids}
    used |= {tool for f in files if (tool := _tool(f.identification or {}))}
    used |= {_validator(v) for f in files for v in (getattr(f, "validation", None) or [])}
    mets_agents, agent_ids = _agents(tenant, organisation, bag_info, agents, used)
    uuid = UUID(aip_id)
    package_events = _events(
        events, agent_ids, representation_identifier(uuid, layout.representation)
    )
    identified_at = max(
        (e.datetime for e in package_events if e.type == "format identification"),
        default=datetime.now(UTC),
    )
    validated_at = max(
        (e.datetime for e in package_events if e.type == "validation"), default=identified_at
    )
    own_events = _file_events(files, uuid, agent_ids, identified_at, validated_at)
    package = PackageDescription(
        aip_id=uuid,
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
        layout.representation_mets,
        package,
        _files(files, tuple(e.id for e in package_events), own_events),
        [e for events in own_events.values() for e in events],
    )
    write_dublin_core(layout.dc_record, package)
    write_package_premis(layout.premis_record, package)
    descriptive = [
        MetadataRef.from_file(_in_payload(layout, layout.dc_record), "DC", layout.dc_record)
    ]
    preservation = [
        MetadataRef.from_file(
            _in_payload(layout, layout.premis_record), "PREMIS", layout.premis_record
        )
    ] + _characterisation_documents(layout)
    schemas = [
        FileRef.from_file(layout.bag_path(p).removeprefix("data/"), p, mime="application/xml")
        for p in sorted(layout.schemas.glob("*.xsd"))
    ]
    write_root_mets(
        layout.root_mets,
        package,
        [RepresentationRef.from_file(layout.representation, version, layout.representation_mets)],
        schemas=schemas,
        descriptive=descriptive,
        preservation=preservation,
    )


def _characterisation_documents(layout: AIPLayout) -> list[MetadataRef]:
    """Each characterisation tool's output (``<tool>-<batch>.json``), pointed to from the root.

    The METS gives each document's size and sha256 and names its tool as the
    OTHERMDTYPE, so a reader knows what it holds without opening it.
    """
    folder = layout.preservation / "characterisation"
    if not folder.is_dir():
        return []
    return [
        MetadataRef.from_file(
            _in_payload(layout, path),
            f"{path.stem.rsplit('-', 1)[0]} JSON output",
            path,
            mime="application/json",
        )
        for path in sorted(folder.glob("*.json"))
    ]


def _in_payload(layout: AIPLayout, path: Any) -> str:
    """A path as the METS names it: relative to the bag's ``data/``."""
    return layout.bag_path(path).removeprefix("data/")


def describe_metadata_version(
    layout: AIPLayout,
    *,
    aip_id: str,
    version: int,
    tenant: str,
    organisation: str,
    bag_info: Mapping[str, list[str]],
    descriptive: Sequence[tuple[str, str]],
    events: Sequence[Any],
    agents: Mapping[str, Any],
    representations: Sequence[RepresentationRef],
    previous_versions: Sequence[tuple[int, str]],
) -> None:
    """Write a metadata-only version's documents into ``layout``; the root ``METS.xml`` last.

    The version holds no representation of its own: its ``dc.xml`` (the
    curator's record, which replaces the bag-info mapping), its package
    PREMIS, and a complete root METS whose ``representations`` (with the
    version that holds each) and ``previous_versions`` point into earlier
    versions' tars. ``events`` are the AIP's whole history so far, so the new
    tar carries what happened after the last one was written.
    """
    used = {i for e in events for ids in (e.agents or {}).values() for i in ids}
    mets_agents, agent_ids = _agents(tenant, organisation, bag_info, agents, used)
    uuid = UUID(aip_id)
    current = representations[-1].name if representations else layout.representation
    package = PackageDescription(
        aip_id=uuid,
        version=version,
        tenant=tenant,
        organisation=organisation,
        created=datetime.now(UTC),
        bag_info={k: list(v) for k, v in bag_info.items()},
        representation=current,
        agents=mets_agents,
        events=_events(events, agent_ids, representation_identifier(uuid, current)),
        descriptive=tuple(descriptive),
    )
    _write_later_version(layout, package, representations, previous_versions)


def _write_later_version(
    layout: AIPLayout,
    package: PackageDescription,
    representations: Sequence[RepresentationRef],
    previous_versions: Sequence[tuple[int, str]],
) -> None:
    """What every version after the first writes last: dc.xml, package PREMIS, root METS.

    ``representations`` are all of the version's state, earlier ones with the
    version that holds each; the root METS records the others' digests.
    """
    write_dublin_core(layout.dc_record, package)
    write_package_premis(layout.premis_record, package, [r.name for r in representations])
    schemas = [
        FileRef.from_file(layout.bag_path(p).removeprefix("data/"), p, mime="application/xml")
        for p in sorted(layout.schemas.glob("*.xsd"))
    ]
    write_root_mets(
        layout.root_mets,
        package,
        representations,
        schemas=schemas,
        previous_versions=previous_versions,
        descriptive=[
            MetadataRef.from_file(_in_payload(layout, layout.dc_record), "DC", layout.dc_record)
        ],
        preservation=[
            MetadataRef.from_file(
                _in_payload(layout, layout.premis_record), "PREMIS", layout.premis_record
            )
        ],
    )


def describe_migration_version(
    layout: AIPLayout,
    *,
    aip_id: str,
    version: int,
    tenant: str,
    organisation: str,
    bag_info: Mapping[str, list[str]],
    descriptive: Sequence[tuple[str, str]] | None,
    events: Sequence[Any],
    agents: Mapping[str, Any],
    representations: Sequence[RepresentationRef],
    previous_versions: Sequence[tuple[int, str]],
    files: Sequence[FileObject],
    file_events: Sequence[Event],
) -> None:
    """Write a migration version's documents into ``layout``; the root ``METS.xml`` last.

    The version adds one representation (``layout.representation``) whose
    METS is complete: ``files`` holds every file of the AIP's current state,
    the outputs this version holds and, with ``held_in`` set, the unchanged
    files earlier versions hold. ``file_events`` are the per-file migration
    (and validation) events; their agent links name catalogue agent
    identifiers (``"ffmpeg 5.1.9"``), mapped here to METS ids like every
    other event's. ``representations`` are the earlier ones, kept as they are.
    """
    used = {i for e in events for ids in (e.agents or {}).values() for i in ids}
    used |= {link.agent_id for e in file_events for link in e.agents}
    mets_agents, agent_ids = _agents(tenant, organisation, bag_info, agents, used)
    uuid = UUID(aip_id)
    rep = layout.representation
    package = PackageDescription(
        aip_id=uuid,
        version=version,
        tenant=tenant,
        organisation=organisation,
        created=datetime.now(UTC),
        bag_info={k: list(v) for k, v in bag_info.items()},
        representation=rep,
        file_group="preservation",
        agents=mets_agents,
        events=_events(events, agent_ids, representation_identifier(uuid, rep)),
        descriptive=tuple(descriptive) if descriptive is not None else None,
    )
    mapped = [
        Event(
            id=e.id,
            type=e.type,
            datetime=e.datetime,
            outcome=e.outcome,
            agents=tuple(
                AgentLink(agent_ids.get(link.agent_id, SOFTWARE_ID), link.role)
                for link in e.agents
            )
            + (AgentLink(ORGANISATION_ID, "authorizer"),),
            objects=e.objects,
            detail=e.detail,
            outcome_detail=e.outcome_detail,
        )
        for e in file_events
    ]
    write_representation_mets(
        layout.representation_mets, package, files, mapped, file_group="preservation"
    )
    _write_later_version(
        layout,
        package,
        [*representations, RepresentationRef.from_file(rep, version, layout.representation_mets)],
        previous_versions,
    )
