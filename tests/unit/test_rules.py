"""Per-tenant archiving rules: checked against their schema, merged, applied at ingest."""

from __future__ import annotations

import json
import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from preservation import ingest
from preservation.catalog import SIPState, Tenant, session_scope
from preservation.config import Settings
from preservation.context import open_context
from preservation.errors import ConfigurationError, InvalidRequestError
from preservation.rules import (
    FormatPolicy,
    Period,
    format_problems,
    parse_period,
    profile_problems,
    retention_until,
    rules_for,
)

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
        result = ingest.run_ingest(ctx, SAMPLE, tenant="museum")
        assert result.state == SIPState.REJECTED.value
        [problem] = result.problems
        assert problem["rule"] == "tenant-required-bag-info"
        assert "Accession-Number" in problem["message"]
        report = Path(result.rejected_to or "") / "report.txt"
        assert "tenant-required-bag-info" in report.read_text()
        # Another tenant without the rule ingests the same bag.
        assert ingest.run_ingest(ctx, SAMPLE, tenant="other").state == "committed"
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
            sip_id = ingest.receive(ctx, claim / SAMPLE.name, tenant=tenant, sip_id=claim.name)
            assert ingest.run_sip(ctx, sip_id).state == "committed"
            assert not claim.exists()
        assert (settings.ingest_dir / "keeper" / "kept" / SAMPLE.name / "bagit.txt").is_file()
        assert not (settings.ingest_dir / "other" / "kept").exists()
        with session_scope(ctx.sessions) as s:
            assert s.get(Tenant, "keeper").name == "Film Archive"
    finally:
        ctx.close()


# -- default_retention ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "period"),
    [
        ("P10Y", Period(years=10)),
        ("P6M", Period(months=6)),
        ("P30D", Period(days=30)),
        ("P1Y6M", Period(years=1, months=6)),
        ("P2Y3M4D", Period(2, 3, 4)),
        ("P0D", Period()),
    ],
)
def test_parse_period(text: str, period: Period) -> None:
    assert parse_period(text) == period
    assert str(period) == text


@pytest.mark.parametrize(
    "text", ["", "P", "10Y", "P1W", "PT1H", "P1Y2H", "P6M1Y", "p1y", " P1Y", "P1.5Y", "P-1Y"]
)
def test_parse_period_refuses_anything_but_years_months_days(text: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        parse_period(text)
    assert info.value.context["rule"] == "retention-period"
    assert "P10Y" in info.value.message  # says what it takes


def test_parse_period_refuses_a_period_past_any_storable_date() -> None:
    with pytest.raises(InvalidRequestError, match="permanent"):
        parse_period("P100000Y")


@pytest.mark.parametrize(
    ("start", "period", "until"),
    [
        (datetime(2024, 2, 29, 13, 5, tzinfo=UTC), "P1Y", datetime(2025, 2, 28, 13, 5, tzinfo=UTC)),
        (datetime(2024, 2, 29, tzinfo=UTC), "P4Y", datetime(2028, 2, 29, tzinfo=UTC)),
        (datetime(2025, 1, 31, tzinfo=UTC), "P1M", datetime(2025, 2, 28, tzinfo=UTC)),
        (datetime(2024, 1, 31, tzinfo=UTC), "P1M", datetime(2024, 2, 29, tzinfo=UTC)),
        (datetime(2024, 8, 31, tzinfo=UTC), "P1Y6M", datetime(2026, 2, 28, tzinfo=UTC)),
        (datetime(2024, 12, 15, tzinfo=UTC), "P30D", datetime(2025, 1, 14, tzinfo=UTC)),
        # months first, then days: 31 Jan + 1 month = 28 Feb, + 1 day = 1 Mar
        (datetime(2025, 1, 31, tzinfo=UTC), "P1M1D", datetime(2025, 3, 1, tzinfo=UTC)),
        (datetime(2024, 11, 30, tzinfo=UTC), "P3M", datetime(2025, 2, 28, tzinfo=UTC)),
    ],
)
def test_retention_until_counts_by_the_calendar(
    settings: Settings, start: datetime, period: str, until: datetime
) -> None:
    _write(settings, {"tenants": {"museum": {"default_retention": period}}})
    assert retention_until(rules_for(settings, "museum"), start) == until


def test_retention_until_is_none_when_permanent_or_unset(settings: Settings) -> None:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    _write(
        settings,
        {
            "defaults": {"default_retention": "P10Y"},
            "tenants": {"museum": {"default_retention": "permanent"}},
        },
    )
    assert retention_until(rules_for(settings, "museum"), start) is None
    assert retention_until(rules_for(settings, "archive"), start) == datetime(
        2034, 1, 1, tzinfo=UTC
    )
    _write(settings, {})
    assert retention_until(rules_for(settings, "museum"), start) is None


# -- schema errors for the new keys --------------------------------------------------------

PROFILE = {
    "BagIt-Profile-Info": {
        "BagIt-Profile-Identifier": "https://archive.example/p.json",
        "BagIt-Profile-Version": "1.3.0",
        "Source-Organization": "Archive",
        "External-Description": "test",
        "Version": "1",
    },
    "Accept-BagIt-Version": ["1.0"],
}


@pytest.mark.parametrize(
    ("document", "where"),
    [
        ({"defaults": {"default_retention": "10 years"}}, "defaults/default_retention"),
        ({"tenants": {"museum": {"default_retention": "P1W"}}}, "tenants/museum/default_retention"),
        ({"defaults": {"default_retention": 10}}, "defaults/default_retention"),
        ({"defaults": {"allowed_formats": ["fmt/353"]}}, "defaults/allowed_formats"),
        (
            {"tenants": {"museum": {"allowed_formats": {"puids": ["353"]}}}},
            "tenants/museum/allowed_formats/puids/0",
        ),
        ({"defaults": {"allowed_formats": {"puids": []}}}, "defaults/allowed_formats/puids"),
        (
            {"defaults": {"allowed_formats": {"puids": ["fmt/1"], "otherwise": "drop"}}},
            "defaults/allowed_formats/otherwise",
        ),
        ({"defaults": {"allowed_formats": {"otherwise": "warn"}}}, "defaults/allowed_formats"),
        ({"defaults": {"bagit_profile": ""}}, "defaults/bagit_profile"),
        ({"defaults": {"bagit_profile": 3}}, "defaults/bagit_profile"),
        (
            {"tenants": {"museum": {"bagit_profile": {**PROFILE, "Accept-BagIt-Version": []}}}},
            "tenants/museum/bagit_profile/Accept-BagIt-Version",
        ),
        (
            {"tenants": {"museum": {"bagit_profile": {**PROFILE, "Manifest-Required": ["md5"]}}}},
            "tenants/museum/bagit_profile",
        ),
        (
            {"defaults": {"bagit_profile": {**PROFILE, "Bag-Info": {"Title": {"regex": "x"}}}}},
            "defaults/bagit_profile/Bag-Info/Title",
        ),
    ],
)
def test_a_broken_new_key_names_the_file_the_place_and_the_rule(
    settings: Settings, document: object, where: str
) -> None:
    _write(settings, document)
    with pytest.raises(ConfigurationError) as info:
        rules_for(settings, "museum")
    assert "archiving-rules.json" in info.value.message
    assert f"at {where}" in info.value.message
    assert "(rule " in info.value.message


def test_an_inline_profile_that_contradicts_itself_names_the_place(settings: Settings) -> None:
    broken = {**PROFILE, "Manifests-Required": ["md5"], "Manifests-Allowed": ["sha256"]}
    _write(settings, {"tenants": {"other": {"bagit_profile": broken}}})
    with pytest.raises(ConfigurationError) as info:
        rules_for(settings, "museum")  # any tenant: the whole file is refused
    assert "archiving-rules.json at tenants/other/bagit_profile" in info.value.message
    assert "at Manifests-Allowed" in info.value.message


def test_a_profile_file_is_read_relative_to_the_rules_file(tmp_path: Path) -> None:
    rules_dir = tmp_path / "etc"
    (rules_dir / "profiles").mkdir(parents=True)
    (rules_dir / "profiles" / "p.json").write_text(json.dumps(PROFILE))
    rules_file = rules_dir / "rules.json"
    rules_file.write_text(json.dumps({"defaults": {"bagit_profile": "profiles/p.json"}}))
    s = Settings(home=tmp_path / "var", rules_file=rules_file)
    profile = rules_for(s, "museum").bagit_profile
    assert profile is not None
    assert profile.identifier == "https://archive.example/p.json"
    assert profile.source == str(rules_dir / "profiles" / "p.json")


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (None, "not found"),
        ("{broken", "not readable JSON"),
        (json.dumps({**PROFILE, "Serialization": "sometimes"}), "at Serialization: "),
        (json.dumps({"Accept-BagIt-Version": ["1.0"]}), "at (top): 'BagIt-Profile-Info'"),
        (json.dumps({**PROFILE, "Serialization": "required"}), "at Accept-Serialization: "),
        (
            json.dumps(
                {
                    **PROFILE,
                    "BagIt-Profile-Info": {
                        **PROFILE["BagIt-Profile-Info"],
                        "BagIt-Profile-Version": "2.0.0",
                    },
                }
            ),
            "at BagIt-Profile-Info/BagIt-Profile-Version",
        ),
    ],
)
def test_a_broken_profile_file_is_a_configuration_error_naming_it(
    settings: Settings, content: str | None, said: str
) -> None:
    profile_file = settings.home_dir / "museum-profile.json"
    if content is not None:
        profile_file.write_text(content)
    _write(settings, {"tenants": {"museum": {"bagit_profile": "museum-profile.json"}}})
    with pytest.raises(ConfigurationError) as info:
        rules_for(settings, "archive")  # checked when the rules load, whichever tenant asks
    assert info.value.message.startswith(f"{profile_file}: ")
    assert said in info.value.message
    assert "tenants/museum/bagit_profile" in info.value.message
    assert info.value.context["rule"] == "bagit-profile"


def test_a_profile_url_is_never_fetched(settings: Settings) -> None:
    _write(settings, {"defaults": {"bagit_profile": "https://archive.example/p.json"}})
    with pytest.raises(ConfigurationError, match="never fetched"):
        rules_for(settings, "museum")


def test_null_lifts_a_default_profile_and_format_list(settings: Settings) -> None:
    _write(
        settings,
        {
            "defaults": {
                "bagit_profile": PROFILE,
                "allowed_formats": {"puids": ["fmt/353"], "otherwise": "reject"},
            },
            "tenants": {"museum": {"bagit_profile": None, "allowed_formats": None}},
        },
    )
    museum, other = rules_for(settings, "museum"), rules_for(settings, "other")
    assert museum.bagit_profile is None and museum.allowed_formats is None
    assert other.bagit_profile is not None
    assert other.allowed_formats == FormatPolicy(frozenset({"fmt/353"}), "reject")


def test_the_example_rules_and_profile_load_and_the_sample_bag_meets_the_profile(
    tmp_path: Path,
) -> None:
    examples = Path(__file__).resolve().parents[2] / "examples"
    s = Settings(home=tmp_path / "var", rules_file=examples / "archiving-rules.json")
    museum = rules_for(s, "museum")
    assert museum.bagit_profile is not None and museum.allowed_formats is not None
    assert str(museum.default_retention) == "P25Y"
    assert rules_for(s, "film-archive").default_retention is None
    assert str(rules_for(s, "anyone").default_retention) == "P10Y"
    found = profile_problems(museum, SAMPLE, submitted=SAMPLE)
    assert [p["rule"] for p in found] == ["profile-identifier"]  # a warning only
    assert found[0]["severity"] == "warning"


def test_format_problems_name_each_file_and_its_puid(settings: Settings) -> None:
    _write(settings, {"defaults": {"allowed_formats": {"puids": ["fmt/353"]}}})
    found = format_problems(
        rules_for(settings, "museum"),
        [
            ("data/scan.tif", "fmt/353", "Tagged Image File Format"),
            ("data/photo.jpg", "fmt/43", "JPEG File Interchange Format"),
            ("data/blob.bin", None, None),
        ],
    )
    assert [(p["file"], p["puid"], p["severity"]) for p in found] == [
        ("data/photo.jpg", "fmt/43", "warning"),
        ("data/blob.bin", None, "warning"),
    ]
    assert all(p["rule"] == "allowed-formats" for p in found)
    assert "fmt/43 (JPEG File Interchange Format)" in found[0]["message"]
    assert "unidentified" in found[1]["message"]
    _write(settings, {})
    assert format_problems(rules_for(settings, "museum"), [("data/blob.bin", None, None)]) == []
