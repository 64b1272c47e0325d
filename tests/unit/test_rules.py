"""Per-tenant archiving rules: checked against their schema, merged, applied at ingest."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import pytest

from preservation import pipeline
from preservation.catalog import SIPState, Tenant, session_scope
from preservation.config import Settings
from preservation.context import open_context
from preservation.errors import ConfigurationError
from preservation.rules import rules_for

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "bags" / "sample-collection"


def _write(settings: Settings, document: object) -> None:
    (settings.home_dir / "archiving-rules.json").write_text(json.dumps(document))


def test_no_file_means_the_settings_defaults(settings: Settings) -> None:
    r = rules_for(settings, "museum")
    assert (r.keep_sips, r.required_bag_info, r.organisation) == (False, (), None)
    assert r.on_duplicate == "warn"


def test_tenant_entry_overrides_defaults_key_by_key(settings: Settings) -> None:
    _write(
        settings,
        {
            "defaults": {"keep_sips": True, "required_bag_info": ["Source-Organization"]},
            "tenants": {"museum": {"keep_sips": False, "organisation": "City Museum"}},
        },
    )
    museum = rules_for(settings, "museum")
    assert museum.keep_sips is False and museum.organisation == "City Museum"
    assert museum.required_bag_info == ("Source-Organization",)
    assert rules_for(settings, "archive").keep_sips is True


def test_on_duplicate_is_a_rule_overridden_per_tenant(settings: Settings) -> None:
    _write(
        settings,
        {"defaults": {"on_duplicate": "reject"}, "tenants": {"museum": {"on_duplicate": "warn"}}},
    )
    assert rules_for(settings, "museum").on_duplicate == "warn"
    assert rules_for(settings, "archive").on_duplicate == "reject"


@pytest.mark.parametrize(
    ("document", "where"),
    [
        ({"tenants": {"museum": {"keep_sips": "yes"}}}, "tenants/museum/keep_sips"),
        ({"tenants": {"museum": {"retention": 5}}}, "tenants/museum"),
        ({"tenants": {"bad tenant": {}}}, "tenants"),
        ({"defaults": {"required_bag_info": ["Has: colon"]}}, "defaults/required_bag_info/0"),
        ({"tenants": {"museum": {"on_duplicate": "ignore"}}}, "tenants/museum/on_duplicate"),
        ({"defaults": {"on_duplicate": True}}, "defaults/on_duplicate"),
    ],
)
def test_a_broken_rules_file_names_the_file_the_place_and_the_rule(
    settings: Settings, document: object, where: str
) -> None:
    _write(settings, document)
    with pytest.raises(ConfigurationError) as info:
        rules_for(settings, "museum")
    assert "archiving-rules.json" in info.value.message
    assert f"at {where}" in info.value.message
    assert "(rule " in info.value.message


def test_unreadable_json_is_a_configuration_error(settings: Settings) -> None:
    (settings.home_dir / "archiving-rules.json").write_text("{not json")
    with pytest.raises(ConfigurationError, match="not readable JSON"):
        rules_for(settings, "museum")


def test_named_rules_file_must_exist(tmp_path: Path) -> None:
    s = Settings(home=tmp_path / "var", rules_file=tmp_path / "nope.json")
    with pytest.raises(ConfigurationError, match="not found"):
        rules_for(s, "museum")


def test_required_bag_info_rejects_with_a_report(settings: Settings) -> None:
    _write(settings, {"tenants": {"museum": {"required_bag_info": ["Accession-Number"]}}})
    ctx = open_context(settings)
    try:
        result = pipeline.run_ingest(ctx, SAMPLE, tenant="museum")
        assert result.state == SIPState.REJECTED.value
        [problem] = result.problems
        assert problem["rule"] == "tenant-required-bag-info"
        assert "Accession-Number" in problem["message"]
        report = Path(result.rejected_to or "") / "report.txt"
        assert "tenant-required-bag-info" in report.read_text()
        # Another tenant without the rule ingests the same bag.
        assert pipeline.run_ingest(ctx, SAMPLE, tenant="other").state == "committed"
    finally:
        ctx.close()


def test_keep_sips_and_organisation_apply_per_tenant(settings: Settings) -> None:
    _write(settings, {"tenants": {"keeper": {"keep_sips": True, "organisation": "Film Archive"}}})
    ctx = open_context(settings)
    try:
        for tenant in ("keeper", "other"):
            claim = settings.ingest_dir / tenant / ".claimed" / str(uuid.uuid4())
            claim.mkdir(parents=True)
            shutil.copytree(SAMPLE, claim / SAMPLE.name)
            sip_id = pipeline.receive(ctx, claim / SAMPLE.name, tenant=tenant, sip_id=claim.name)
            assert pipeline.run_sip(ctx, sip_id).state == "committed"
            assert not claim.exists()
        assert (settings.ingest_dir / "keeper" / "kept" / SAMPLE.name / "bagit.txt").is_file()
        assert not (settings.ingest_dir / "other" / "kept").exists()
        with session_scope(ctx.sessions) as s:
            assert s.get(Tenant, "keeper").name == "Film Archive"
    finally:
        ctx.close()
