"""A bag already in the archive, by payload or by External-Identifier, is caught at validate.

The tenant rule ``on_duplicate`` decides: ``warn`` (the default) ingests it and
says which AIP it repeats; ``reject`` puts it aside with a report naming that
AIP. Only the tenant's own AIPs count.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bagit
import pytest
from sqlalchemy import event, select

from preservation import ingest
from preservation.catalog import SIP, AIPState, File, SIPState, service, session_scope
from preservation.config import Settings
from preservation.context import Context, open_context

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "bags" / "sample-collection"


@pytest.fixture
def ctx(settings: Settings) -> Iterator[Context]:
    c = open_context(settings)
    yield c
    c.close()


def _rules(settings: Settings, document: object) -> None:
    (settings.home_dir / "archiving-rules.json").write_text(json.dumps(document))


def _variant(
    tmp_path: Path,
    name: str,
    *,
    external_identifier: str | None = None,
    extra_file: str | None = None,
    rename: tuple[str, str] | None = None,
) -> Path:
    """A copy of the sample bag, changed, with its manifests made again."""
    bag_dir = tmp_path / "bags" / name
    shutil.copytree(SAMPLE, bag_dir)
    if extra_file is not None:
        (bag_dir / "data" / "extra.txt").write_text(extra_file)
    if rename is not None:
        (bag_dir / rename[0]).rename(bag_dir / rename[1])
    bag = bagit.Bag(str(bag_dir))
    if external_identifier is not None:
        bag.info["External-Identifier"] = external_identifier
    bag.save(manifests=True)
    return bag_dir


def _empty_bag(tmp_path: Path, name: str, external_identifier: str) -> Path:
    bag_dir = tmp_path / "bags" / name
    bag_dir.mkdir(parents=True)
    bagit.make_bag(str(bag_dir), {"External-Identifier": external_identifier}, checksums=["sha256"])
    (bag_dir / "manifest-sha256.txt").write_text("")
    bagit.Bag(str(bag_dir)).save()
    return bag_dir


def _validation_events(ctx: Context, sip_id: str) -> list[Any]:
    with session_scope(ctx.sessions) as s:
        # The bag's validation, not the per-format ones the characterise stage adds.
        events = [
            e
            for e in service.list_events(s, sip_id=sip_id)
            if e.type == "validation" and not e.detail.startswith("format validation")
        ]
        s.expunge_all()
        return events


def _rules_of(problems: list[dict[str, Any]]) -> list[str]:
    return [p["rule"] for p in problems]


# -- warn (the default) ------------------------------------------------------------------


def test_identical_payload_is_ingested_with_a_warning_naming_the_first_aip(
    ctx: Context, tmp_path: Path
) -> None:
    first = ingest.run_ingest(ctx, SAMPLE, tenant="museum")
    assert first.state == SIPState.COMMITTED.value, first.problems
    assert first.warnings == []
    # Same bytes under another identifier, one file renamed: still the same payload.
    copy = _variant(
        tmp_path,
        "sample-again",
        external_identifier="EX-2024-0999",
        rename=("data/notes/café.txt", "data/notes/cafe-renamed.txt"),
    )
    second = ingest.run_ingest(ctx, copy, tenant="museum")
    assert second.state == SIPState.COMMITTED.value, second.problems
    assert second.aip_id != first.aip_id
    [warning] = [w for w in second.warnings if w["rule"] == "duplicate-payload"]
    assert warning["severity"] == "warning"
    assert first.aip_id in warning["message"]
    assert warning["aip_id"] == first.aip_id
    assert "sample-collection" in warning["message"]  # the first AIP's bag
    assert second.to_dict()["warnings"] == second.warnings
    assert "duplicate-external-identifier" not in _rules_of(second.warnings)

    [ev] = _validation_events(ctx, second.sip_id)
    assert ev.outcome == "warning"
    assert first.aip_id in ev.detail
    assert ev.objects["duplicate_of"] == [first.aip_id]
    assert "duplicate-payload" in _rules_of(json.loads(ev.outcome_detail))
    with session_scope(ctx.sessions) as s:
        assert service.verify_event_chain(s, "museum") == []


def test_same_external_identifier_is_a_duplicate_even_with_another_payload(
    ctx: Context, tmp_path: Path
) -> None:
    first = ingest.run_ingest(ctx, SAMPLE, tenant="museum")
    changed = _variant(tmp_path, "sample-plus-one", extra_file="one more file\n")
    second = ingest.run_ingest(ctx, changed, tenant="museum")
    assert second.state == SIPState.COMMITTED.value, second.problems
    assert _rules_of(second.warnings) == ["duplicate-external-identifier"]
    [warning] = second.warnings
    assert warning["severity"] == "warning"
    assert "EX-2024-0001" in warning["message"] and first.aip_id in warning["message"]
    [ev] = _validation_events(ctx, second.sip_id)
    assert ev.outcome == "warning"
    assert ev.objects["duplicate_of"] == [first.aip_id]


def test_a_new_payload_and_identifier_draws_no_warning(ctx: Context, tmp_path: Path) -> None:
    ingest.run_ingest(ctx, SAMPLE, tenant="museum")
    other = _variant(tmp_path, "other", external_identifier="EX-2", extra_file="new\n")
    result = ingest.run_ingest(ctx, other, tenant="museum")
    assert result.state == SIPState.COMMITTED.value
    assert result.warnings == []
    [ev] = _validation_events(ctx, result.sip_id)
    assert ev.outcome == "success" and "duplicate_of" not in ev.objects


def test_another_tenants_identical_bag_is_not_a_duplicate_and_not_revealed(
    ctx: Context,
) -> None:
    first = ingest.run_ingest(ctx, SAMPLE, tenant="museum")
    _rules(ctx.settings, {"defaults": {"on_duplicate": "reject"}})
    second = ingest.run_ingest(ctx, SAMPLE, tenant="library")
    assert second.state == SIPState.COMMITTED.value, second.problems
    assert second.warnings == []
    with session_scope(ctx.sessions) as s:
        for ev in service.list_events(s, tenant_id="library"):
            assert first.aip_id not in json.dumps(
                [ev.detail, ev.outcome_detail, ev.objects], default=str
            )


def test_a_pending_aip_counts(ctx: Context, tmp_path: Path) -> None:
    sip_id = ingest.receive(ctx, _variant(tmp_path, "sample-copy"), tenant="museum")
    names = [name for name, _ in ingest.STAGES]
    for stage in names[: names.index("package")]:
        ingest.run_stage(ctx, stage, sip_id)
    with session_scope(ctx.sessions) as s:
        pending = service.get_aip(s, service.get_sip(s, sip_id).aip_id or "")
        assert pending.state is AIPState.PENDING
        pending_id = pending.id
    second = ingest.run_ingest(ctx, SAMPLE, tenant="museum")
    assert second.state == SIPState.COMMITTED.value
    assert {w["rule"] for w in second.warnings} == {
        "duplicate-payload",
        "duplicate-external-identifier",
    }
    assert all(w["aip_id"] == pending_id for w in second.warnings)
    assert all("not yet committed" in w["message"] for w in second.warnings)


def test_a_sip_validated_but_not_yet_described_counts_by_its_sip_id(
    ctx: Context, tmp_path: Path
) -> None:
    """Two copies of one bag side by side: the second must not pass for want of an AIP row."""
    first = ingest.receive(ctx, _variant(tmp_path, "sample-copy"), tenant="museum")
    ingest.run_stage(ctx, "validate", first)  # staged; its AIP is only made at describe
    second = ingest.run_ingest(ctx, SAMPLE, tenant="museum")
    assert second.state == SIPState.COMMITTED.value
    assert {w["rule"] for w in second.warnings} == {
        "duplicate-payload",
        "duplicate-external-identifier",
    }
    for warning in second.warnings:
        assert (warning["sip_id"], warning["aip_id"]) == (first, None)
        assert f"SIP {first} (bag sample-copy" in warning["message"]
        assert "in flight at staged" in warning["message"]
    _rules(ctx.settings, {"defaults": {"on_duplicate": "reject"}})
    third = ingest.run_ingest(ctx, _variant(tmp_path, "sample-third"), tenant="museum")
    assert third.state == SIPState.REJECTED.value
    assert first in (Path(third.rejected_to or "") / "report.txt").read_text()


def test_the_aip_of_a_rejected_sip_does_not_count(ctx: Context) -> None:
    first = ingest.run_ingest(ctx, SAMPLE, tenant="museum")
    with session_scope(ctx.sessions) as s:
        service.set_sip_state(s, service.get_sip(s, first.sip_id), SIPState.REJECTED)
    second = ingest.run_ingest(ctx, SAMPLE, tenant="museum")
    assert second.state == SIPState.COMMITTED.value
    assert second.warnings == []


def test_empty_payloads_are_not_duplicates_by_payload(ctx: Context, tmp_path: Path) -> None:
    one = ingest.run_ingest(ctx, _empty_bag(tmp_path, "empty-1", "E-1"), tenant="museum")
    assert one.state == SIPState.COMMITTED.value, one.problems
    two = ingest.run_ingest(ctx, _empty_bag(tmp_path, "empty-2", "E-2"), tenant="museum")
    assert two.state == SIPState.COMMITTED.value, two.problems
    assert two.warnings == []


# -- reject ----------------------------------------------------------------------------------


def test_reject_mode_rejects_a_duplicate_payload_with_a_report_naming_the_aip(
    ctx: Context, tmp_path: Path
) -> None:
    _rules(ctx.settings, {"tenants": {"museum": {"on_duplicate": "reject"}}})
    first = ingest.run_ingest(ctx, SAMPLE, tenant="museum")
    assert first.state == SIPState.COMMITTED.value, first.problems
    copy = _variant(tmp_path, "sample-again", external_identifier="EX-2024-0999")
    second = ingest.run_ingest(ctx, copy, tenant="museum")
    assert second.state == SIPState.REJECTED.value
    [problem] = second.problems
    assert problem["severity"] == "error"
    assert problem["rule"] == "duplicate-payload"
    assert problem["aip_id"] == first.aip_id
    assert re.search(
        rf"payload identical to AIP {first.aip_id} "
        r"\(bag sample-collection, ingested \d{4}-\d\d-\d\d\)",
        problem["message"],
    ), problem["message"]

    report_dir = Path(second.rejected_to or "")
    report = json.loads((report_dir / "report.json").read_text())
    assert report["stage"] == "validate"
    assert report["problems"] == second.problems
    text = (report_dir / "report.txt").read_text()
    assert f"payload identical to AIP {first.aip_id}" in text
    assert "duplicate-payload" in text
    # Nothing stays staged: no files, no AIP, no staging folder.
    assert not (ctx.settings.staging_dir / second.sip_id).exists()
    with session_scope(ctx.sessions) as s:
        assert s.scalars(select(File).where(File.sip_id == second.sip_id)).all() == []
        assert service.get_sip(s, second.sip_id).aip_id is None
        assert len(service.find_aips(s, tenant_id="museum")) == 1
        assert service.verify_event_chain(s, "museum") == []
    [ev] = _validation_events(ctx, second.sip_id)
    assert ev.outcome == "failure" and first.aip_id in ev.outcome_detail
    assert ev.objects["duplicate_of"] == [first.aip_id]


def test_reject_mode_rejects_a_known_external_identifier(ctx: Context, tmp_path: Path) -> None:
    _rules(ctx.settings, {"defaults": {"on_duplicate": "reject"}})
    first = ingest.run_ingest(ctx, SAMPLE, tenant="museum")
    changed = _variant(tmp_path, "sample-plus-one", extra_file="one more file\n")
    second = ingest.run_ingest(ctx, changed, tenant="museum")
    assert second.state == SIPState.REJECTED.value
    [problem] = second.problems
    assert (problem["severity"], problem["rule"]) == ("error", "duplicate-external-identifier")
    assert first.aip_id in problem["message"] and "EX-2024-0001" in problem["message"]
    assert first.aip_id in (Path(second.rejected_to or "") / "report.txt").read_text()
    # The tenant's own rule can turn it back to a warning.
    _rules(
        ctx.settings,
        {"defaults": {"on_duplicate": "reject"}, "tenants": {"museum": {"on_duplicate": "warn"}}},
    )
    third = ingest.run_ingest(ctx, changed, tenant="museum")
    assert third.state == SIPState.COMMITTED.value
    assert _rules_of(third.warnings) == ["duplicate-external-identifier"]


# -- the catalogue query ---------------------------------------------------------------------


def _fake_aip(
    s: Any, tenant: str, digests: list[str], *, state: SIPState = SIPState.COMMITTED
) -> str:
    sip = service.create_sip(s, tenant_id=tenant, name="fake", source_path="/nowhere")
    service.add_staged_files(
        s,
        sip.id,
        [
            {"original_name": f"data/f{i}", "size": 1, "sha256": d, "sha512": "0" * 128}
            for i, d in enumerate(digests)
        ],
    )
    sip.file_count = len(digests)
    service.set_sip_state(s, sip, state)
    return service.create_aip(s, sip).id


def test_payload_query_compares_digest_multisets_of_the_tenant_only(ctx: Context) -> None:
    x, y, z = "a" * 64, "b" * 64, "c" * 64
    with session_scope(ctx.sessions) as s:
        match = _fake_aip(s, "museum", [x, x, y])
        _fake_aip(s, "museum", [x, y, y])  # same digests, other counts
        _fake_aip(s, "museum", [x, y])  # a subset
        _fake_aip(s, "museum", [x, y, z])
        _fake_aip(s, "library", [x, x, y])  # another tenant's
        _fake_aip(s, "museum", [x, x, y], state=SIPState.REJECTED)
    with session_scope(ctx.sessions) as s:
        found = service.sips_with_payload(s, "museum", [y, x, x])
        assert [sip.aip_id for sip in found] == [match]
        assert service.sips_with_payload(s, "museum", []) == []
        assert service.sips_with_payload(s, "nobody", [x, x, y]) == []


def test_payload_query_uses_three_statements_however_many_candidates(ctx: Context) -> None:
    x = "d" * 64
    with session_scope(ctx.sessions) as s:
        for n in range(40):  # 40 candidates share the first digest; one matches
            _fake_aip(s, "museum", [x, f"{n:064x}"])
        for n in range(200):  # files of the tenant that share nothing
            _fake_aip(s, "museum", [f"{n + 1000:064x}", f"{n + 5000:064x}"])
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    with session_scope(ctx.sessions) as s:
        event.listen(ctx.engine, "before_cursor_execute", seen)
        try:
            found = service.sips_with_payload(s, "museum", [f"{7:064x}", x])
        finally:
            event.remove(ctx.engine, "before_cursor_execute", seen)
        assert len(found) == 1
        assert found[0].id in {
            sip.id for sip in s.scalars(select(SIP).join(File).where(File.sha256 == f"{7:064x}"))
        }
    # A sample of digests counted, the candidates, their digests counted.
    assert 1 <= len(statements) <= 3, statements
    for sql in statements:  # never all the tenant's files: by digest, or by candidate SIP
        if re.search(r"\bfiles\b", sql):
            assert re.search(r"files\.sha256 = |files\.sha256 IN|files\.sip_id IN", sql), sql
