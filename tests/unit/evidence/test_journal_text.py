"""The journal's fast path reads the chain through the driver: it must write the very text
the chain was hashed over, on both backends, whatever the events hold."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from sqlalchemy import select

from preservation.catalog import service
from preservation.catalog.database import session_scope
from preservation.catalog.models import PremisEvent
from preservation.evidence import journal


def test_the_driver_path_gives_the_hashed_text(session_factory) -> None:  # type: ignore[no-untyped-def]
    with session_scope(session_factory) as s:
        service.ensure_tenant(s, "museum")
        odd = [
            {"detail": 'quotes " and \\\\ backslashes', "objects": {"b": [1, 2], "a": {"z": None}}},
            {"detail": "accents: Musée d'Exemple, 東京, emoji 🎞", "sip_id": None},
            {"detail": "control \x01 and \n newline", "objects": {"prev": "x" * 64, "seq": 7}},
            {"detail": "", "occurred_at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)},  # 0 µs
            {"detail": "plain", "agents": {"executing program": ["preservation 1"], "a": []}},
        ]
        for i, extra in enumerate(odd * 3):
            service.record_event(
                s,
                tenant_id="museum",
                type="ingestion",
                outcome="success",
                detail=extra.get("detail", ""),
                objects=extra.get("objects", {"i": i}),
                agents=extra.get("agents"),
                sip_id=extra.get("sip_id", f"sip-{i}"),
                occurred_at=extra.get("occurred_at"),
            )
    with session_scope(session_factory) as s:
        rows = list(s.scalars(select(PremisEvent).order_by(PremisEvent.seq)))
        expected = [service.canonical_event(service.event_fields(r)).encode() for r in rows]
        fast = list(journal.iter_chain(s, "museum"))
    assert [e.text for e in fast] == expected
    assert all(hashlib.sha256(e.text).hexdigest() == e.hash for e in fast)
    assert [e.seq for e in fast] == list(range(1, len(rows) + 1))
    with session_scope(session_factory) as s:
        middle = [e.seq for e in journal.iter_chain(s, "museum", 4, 9)]
    assert middle == [4, 5, 6, 7, 8, 9]
