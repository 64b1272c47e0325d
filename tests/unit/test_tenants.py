"""The tenant-id rule: one pattern, the same in the code and in the rules schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from preservation.config import Settings
from preservation.errors import ConfigurationError, InvalidTenantError
from preservation.rules import load_rules
from preservation.tenants import TENANT_ID_PATTERN, check_tenant_id, is_valid_tenant_id

SCHEMA = Path(__file__).resolve().parents[2] / "schemas" / "archiving-rules.schema.json"

GOOD = ["museum", "a", "0", "kbr.be", "state_archives-2", "x" * 63]
BAD = ["", ".", "..", "a/b", "Museum", "-a", ".a", "_a", "x" * 64, "a b", "a\n", "é", "a\\b"]


@pytest.mark.parametrize("value", GOOD)
def test_good_ids_pass(value: str) -> None:
    assert check_tenant_id(value) == value


@pytest.mark.parametrize("value", BAD)
def test_bad_ids_name_the_source_and_the_rule(value: str) -> None:
    assert not is_valid_tenant_id(value)
    with pytest.raises(InvalidTenantError) as exc:
        check_tenant_id(value, source="--tenant")
    assert exc.value.message.startswith("--tenant: ")
    assert "1-63 characters" in exc.value.message
    assert exc.value.context["rule"] == "tenant-id"


def test_rules_schema_uses_the_same_pattern() -> None:
    schema = json.loads(SCHEMA.read_text())
    assert schema["properties"]["tenants"]["propertyNames"]["pattern"] == TENANT_ID_PATTERN


@pytest.mark.parametrize("name", ["..", "Museum", "a/b", "", "museum\n"])
def test_rules_file_with_a_bad_tenant_id_is_refused(settings: Settings, name: str) -> None:
    (settings.home_dir / "archiving-rules.json").write_text(json.dumps({"tenants": {name: {}}}))
    with pytest.raises(ConfigurationError) as exc:
        load_rules(settings)
    assert "archiving-rules.json" in exc.value.message and "tenants" in exc.value.message
