"""Retention, legal holds and four-eyes disposal through the API."""

from __future__ import annotations

from fastapi.testclient import TestClient

from preservation.context import Context
from tests.api.conftest import Tokens, add_aip, ago


def test_retention_holds_and_four_eyes_disposal(
    client: TestClient, ctx: Context, tokens: Tokens
) -> None:
    aip = add_aip(ctx, "museum", title="Old ledger", created_at=ago(400))
    alice = tokens.headers("curator", "museum", "alice")
    bob = tokens.headers("curator", "museum", "bob")
    consumer = tokens.headers("consumer", "museum", "carol")
    base = f"/api/v1/aips/{aip}"

    r = client.get(f"{base}/retention", headers=consumer)
    assert r.status_code == 200 and r.json()["retention_until"] is None
    assert r.json()["disposable"] is False  # kept permanently until a date is set
    r = client.post(f"{base}/disposal", json={"reason": "expired"}, headers=alice)
    assert r.status_code == 409 and "no retention date" in r.json()["detail"]

    r = client.put(f"{base}/retention", json={"period": "P10Y"}, headers=alice)
    assert r.status_code == 200
    assert r.json()["retention_until"].startswith(str(ago(400).year + 10))
    r = client.post(f"{base}/disposal", json={"reason": "expired"}, headers=alice)
    assert r.status_code == 409 and "must be kept until" in r.json()["detail"]

    r = client.put(f"{base}/retention", json={"until": "2020-01-01"}, headers=alice)
    assert r.json()["disposable"] is True
    r = client.post(f"{base}/hold", json={"reason": "court case 42"}, headers=alice)
    assert r.status_code == 200 and r.json()["on_hold"] is True
    r = client.post(f"{base}/disposal", json={"reason": "expired"}, headers=alice)
    assert r.status_code == 409 and "legal hold" in r.json()["detail"]
    r = client.delete(f"{base}/hold", params={"reason": "case closed"}, headers=alice)
    assert r.status_code == 200 and r.json()["on_hold"] is False
    r = client.delete(f"{base}/hold", params={"reason": "again"}, headers=alice)
    assert r.status_code == 409

    r = client.post(f"{base}/disposal", json={"reason": "retention expired"}, headers=alice)
    assert r.status_code == 201, r.text
    disposal = r.json()["disposal_id"]
    assert r.json()["state"] == "requested"
    r = client.post(f"{base}/disposal", json={"reason": "twice"}, headers=alice)
    assert r.status_code == 409 and r.json()["rule"] == "disposal-pending"
    r = client.post(f"/api/v1/disposals/{disposal}/approve", headers=alice)
    assert r.status_code == 403 and r.json()["rule"] == "four-eyes"
    r = client.post(f"/api/v1/disposals/{disposal}/approve", headers=consumer)
    assert r.status_code == 403 and r.json()["rule"] == "role"

    # A hold placed between request and approval still stops it.
    client.post(f"{base}/hold", json={"reason": "new claim"}, headers=bob)
    r = client.post(f"/api/v1/disposals/{disposal}/approve", headers=bob)
    assert r.status_code == 409
    client.delete(f"{base}/hold", params={"reason": "claim withdrawn"}, headers=bob)

    r = client.post(f"/api/v1/disposals/{disposal}/approve", headers=bob)
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "disposed" and r.json()["approved_by"] == "bob"
    r = client.post(f"/api/v1/disposals/{disposal}/approve", headers=bob)
    assert r.status_code == 409

    # The tombstone: id, state, events (a deletion among them) stay; search forgets it.
    r = client.get(base, headers=consumer)
    assert r.status_code == 200 and r.json()["state"] == "disposed"
    assert r.json()["descriptive"] is None
    events = client.get(f"{base}/events", headers=consumer).json()["items"]
    types = [e["type"] for e in events]
    assert "deletion" in types and types.count("policy assignment") >= 5
    deletion = next(e for e in events if e["type"] == "deletion")
    assert "alice" in str(deletion["agents"]) and "bob" in str(deletion["agents"])
    assert client.get("/api/v1/aips", params={"q": "ledger"}, headers=consumer).json()[
        "items"
    ] == []
    r = client.post(f"{base}/hold", json={"reason": "too late"}, headers=alice)
    assert r.status_code == 409
    listed = client.get("/api/v1/disposals", headers=consumer).json()
    assert [d["disposal_id"] for d in listed] == [disposal]
