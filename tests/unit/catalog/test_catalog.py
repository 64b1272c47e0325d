"""The catalogue on SQLite and PostgreSQL: migrations, SIPs, bulk files, event chain."""

from __future__ import annotations

from sqlalchemy import inspect, update

from preservation.catalog import (
    AIPState,
    PremisEvent,
    SIPState,
    make_engine,
    service,
    session_scope,
)


def test_migrations_create_every_table(catalog_url: str) -> None:
    names = set(inspect(make_engine(catalog_url)).get_table_names())
    assert {
        "tenants",
        "agents",
        "sips",
        "aips",
        "aip_versions",
        "files",
        "premis_events",
        "cartridges",
        "tape_copies",
        "alembic_version",
    } <= names


def test_sip_lifecycle_and_bulk_files(session_factory) -> None:  # type: ignore[no-untyped-def]
    with session_scope(session_factory) as s:
        sip = service.create_sip(s, tenant_id="museum", name="bag1", source_path="/x/bag1")
        n = service.add_staged_files(
            s,
            sip.id,
            (
                {
                    "original_name": f"data/f{i:05d}.txt",
                    "size": i,
                    "sha256": "a" * 64,
                    "sha512": "b" * 128,
                    "submitted_digests": {"md5": "c" * 32},
                }
                for i in range(12_000)
            ),
        )
        assert n == 12_000
        service.set_sip_state(s, sip, SIPState.STAGED)
        sip_id = sip.id
    with session_scope(session_factory) as s:
        sip = service.get_sip(s, sip_id)
        assert sip.state is SIPState.STAGED
        files = service.list_files(s, sip_id=sip_id)
        assert len(files) == 12_000
        assert files[5].submitted_digests == {"md5": "c" * 32}
        aip = service.create_aip(s, sip)
        assert service.create_aip(s, sip).id == aip.id  # idempotent: one AIP per SIP
        v1 = service.create_aip_version(s, aip, 1)
        assert service.create_aip_version(s, aip, 1).id == v1.id
        assert aip.state is AIPState.PENDING
        assert service.count_sips_by_state(s) == {"staged": 1}


def test_event_chain_detects_tampering(session_factory) -> None:  # type: ignore[no-untyped-def]
    with session_scope(session_factory) as s:
        for kind in ("validation", "fixity check", "ingestion"):
            service.record_event(
                s,
                tenant_id="archive",
                type=kind,
                outcome="success",
                agents={"executing program": ["preservation-0.1.0"]},
                objects={"files": 3},
            )
        service.record_event(s, tenant_id="other", type="ingestion", outcome="success")
    with session_scope(session_factory) as s:
        assert service.verify_event_chain(s, "archive") == []
        events = service.list_events(s, tenant_id="archive")
        assert [e.seq for e in events] == [1, 2, 3]
        assert events[1].prev_hash == events[0].hash
        s.execute(
            update(PremisEvent).where(PremisEvent.id == events[1].id).values(outcome="failure")
        )
    with session_scope(session_factory) as s:
        problems = service.verify_event_chain(s, "archive")
        assert any("altered" in p for p in problems)
        assert service.verify_event_chain(s, "other") == []


def test_deleting_the_newest_event_shows(session_factory) -> None:  # type: ignore[no-untyped-def]
    with session_scope(session_factory) as s:
        for _ in range(2):
            service.record_event(s, tenant_id="t", type="ingestion", outcome="success")
    with session_scope(session_factory) as s:
        last = service.list_events(s, tenant_id="t")[-1]
        s.delete(last)
    with session_scope(session_factory) as s:
        assert service.verify_event_chain(s, "t") == ["the newest events of the chain were removed"]


def test_an_event_appended_after_another_writer_moved_the_chain_follows_it(
    session_factory,  # type: ignore[no-untyped-def]
) -> None:
    """The tenant row read before the lock (a stage looks at its tenant first) is stale
    once another worker appends an event; the locked read must refresh it, or the
    next event repeats a sequence number and the stage fails (seen in a flood)."""
    with session_scope(session_factory) as s:
        service.record_event(s, tenant_id="flood", type="ingestion", outcome="success")
    with session_scope(session_factory) as stage:
        tenant = service.ensure_tenant(stage, "flood")  # loaded (and kept), then...
        assert tenant.event_count == 1
        with session_scope(session_factory) as other:  # ...another worker moves the chain
            service.record_event(other, tenant_id="flood", type="ingestion", outcome="success")
        ev = service.record_event(stage, tenant_id="flood", type="ingestion", outcome="success")
        assert ev.seq == 3 and tenant.event_count == 3
    with session_scope(session_factory) as s:
        assert service.verify_event_chain(s, "flood") == []


def test_the_head_revision_constant_is_the_migrations_head() -> None:
    """open_context skips Alembic when the catalogue is at HEAD_REVISION: it must be the head."""
    from preservation.catalog.database import HEAD_REVISION, head_revision

    assert head_revision() == HEAD_REVISION
