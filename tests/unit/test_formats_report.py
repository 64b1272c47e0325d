"""The format risk report on real ingests, on both catalogues, through the function, API and CLI.

Two tenants ingest real bags: ``library`` the sample collection, ``museum`` a
small bag made here with what a curator worries about (files fido names by
extension only, one it cannot name at all, two a validator finds malformed).
A disposed AIP and a file a migration superseded sit beside them, and must
not be counted. The counts are checked against the catalogue's own file rows,
aggregated in Python, as well as against what is known of the bags.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bagit  # type: ignore[import-untyped]
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from preservation.api import create_app
from preservation.catalog import make_engine, upgrade
from preservation.catalog.database import session_scope
from preservation.catalog.models import AIP, AIPState, AIPVersion, File, Role
from preservation.cli import app as cli
from preservation.config import Settings
from preservation.context import Context, open_context
from preservation.errors import InvalidRequestError, NotFoundError
from preservation.formats import FormatReport, format_report, load_format_policy, policy_path
from preservation.ingest import run_ingest
from preservation.migrate.policy import default_policy_path
from preservation.tokens import create_token
from tests.api.conftest import add_aip
from tests.conftest import EXAMPLES

SAMPLE = EXAMPLES / "sample-collection"
MYSTERY = bytes(range(256)) * 4  # no signature, no known extension: unidentified


def _museum_bag(folder: Path) -> Path:
    from PIL import Image

    (folder / "images").mkdir(parents=True)
    (folder / "documents").mkdir()
    picture = Image.new("RGB", (40, 30), (10, 200, 30))
    picture.save(folder / "images" / "scan-1.png")
    picture.save(folder / "images" / "scan-2.png")
    png = (folder / "images" / "scan-1.png").read_bytes()
    (folder / "images" / "truncated.png").write_bytes(png[: len(png) // 2])
    declaration = '<?xml version="1.0" encoding="UTF-8"?>\n'
    (folder / "documents" / "record.xml").write_text(declaration + "<r><t>ok</t></r>\n")
    (folder / "documents" / "broken.xml").write_text(declaration + "<r><t>no</x></r>\n")
    (folder / "documents" / "notes.txt").write_text("plain words\n")
    (folder / "documents" / "more notes.txt").write_text("more plain words\n")
    (folder / "documents" / "mystery.qqq").write_bytes(MYSTERY)
    bagit.make_bag(str(folder), {"Source-Organization": "Museum"}, checksums=["sha256"])
    return folder


@dataclass
class Holdings:
    ctx: Context
    library_aip: str
    museum_aip: str
    superseded: str  # the original name of the file a migration replaced
    admin: str
    library: str
    museum: str


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def holdings(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    virus_scanner: str | None,
) -> Iterator[Holdings]:
    """Both tenants' ingests, once per catalogue for the whole module: ingest takes seconds."""
    root = tmp_path_factory.mktemp("formats")
    if request.param == "sqlite":
        url = f"sqlite:///{root / 'catalog.sqlite'}"
    else:
        url = request.getfixturevalue("pg_url")
        engine = make_engine(url)
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
        engine.dispose()
    upgrade(url)
    settings = Settings(home=root / "var", database_url=url, quiescent_seconds=0.2)
    settings.ensure_dirs()
    ctx = open_context(settings)
    try:
        library = run_ingest(ctx, SAMPLE, tenant="library")
        museum = run_ingest(ctx, _museum_bag(root / "museum-bag"), tenant="museum")
        assert library.aip_id and museum.aip_id, (library.problems, museum.problems)
        # Neither a disposed AIP's files nor a file a migration replaced are held.
        add_aip(ctx, "library", state=AIPState.DISPOSED, puids=("fmt/40", "fmt/40"))
        with session_scope(ctx.sessions) as s:
            replaced = s.scalars(
                select(File)
                .join(AIPVersion, File.aip_version_id == AIPVersion.id)
                .where(AIPVersion.aip_id == library.aip_id, File.puid == "fmt/412")
            ).one()
            replaced.superseded_in = 2
            superseded = replaced.original_name
            admin = create_token(s, role=Role.ADMIN, label="admin").secret
            tokens = {
                t: create_token(s, role=Role.CONSUMER, tenant_id=t, label=t).secret
                for t in ("library", "museum")
            }
        yield Holdings(
            ctx, library.aip_id, museum.aip_id, superseded, admin, tokens["library"],
            tokens["museum"],
        )
    finally:
        ctx.close()


def _report(h: Holdings, tenant: str | None) -> FormatReport:
    policy = load_format_policy(h.ctx.settings)
    with session_scope(h.ctx.sessions) as s:
        return format_report(s, tenant, policy)


def _by_puid(report: FormatReport) -> dict[str | None, Any]:
    return {r.puid: r for r in report.formats}


def _expected(h: Holdings, tenant: str | None) -> dict[str | None, dict[str, int]]:
    """The report worked out the slow way: every file row, filtered and summed in Python."""
    keys = ("files", "bytes", "by_extension", "unidentified", "invalid")
    out: dict[str | None, dict[str, int]] = {}
    with session_scope(h.ctx.sessions) as s:
        rows = s.execute(
            select(File, AIP.tenant_id, AIP.state, AIPVersion.committed_at)
            .join(AIPVersion, File.aip_version_id == AIPVersion.id)
            .join(AIP, AIPVersion.aip_id == AIP.id)
        ).all()
        for f, owner, state, committed in rows:
            if tenant not in (None, owner) or committed is None or f.superseded_in is not None:
                continue
            if state not in (AIPState.ACTIVE, AIPState.PENDING):
                continue
            c = out.setdefault(f.puid, dict.fromkeys(keys, 0))
            c["files"] += 1
            c["bytes"] += f.size
            c["by_extension"] += f.identification_basis == "extension"
            c["unidentified"] += f.puid is None
            c["invalid"] += f.valid is False
    return out


def _counts(report: FormatReport) -> dict[str | None, dict[str, Any]]:
    keys = ("files", "bytes", "by_extension", "unidentified", "invalid")
    return {r.puid: {k: getattr(r, k) for k in keys} for r in report.formats}


# -- the service function -----------------------------------------------------------------


def test_each_tenant_sees_its_own_files_counted_per_puid(holdings: Holdings) -> None:
    for tenant in ("library", "museum", None):
        report = _report(holdings, tenant)
        assert report.tenant == tenant
        assert _counts(report) == _expected(holdings, tenant), tenant


def test_the_museum_bag_as_a_curator_reads_it(holdings: Holdings) -> None:
    report = _report(holdings, "museum")
    rows = _by_puid(report)
    payload = holdings.ctx.settings.home_dir.parent / "museum-bag" / "data"
    unidentified = rows[None]
    assert (unidentified.files, unidentified.bytes, unidentified.unidentified) == (
        1, len(MYSTERY), 1,
    )
    assert unidentified.format_name is None and unidentified.actions == []
    text = rows["x-fmt/111"]  # plain text: named by its extension, no validator
    assert (text.files, text.by_extension, text.invalid) == (2, 2, 0)
    assert text.bytes == sum(
        (payload / "documents" / n).stat().st_size for n in ("notes.txt", "more notes.txt")
    )
    assert text.format_name == "Plain Text File"
    xml = rows["fmt/101"]
    assert (xml.files, xml.invalid, xml.by_extension) == (2, 1, 0)
    pngs = [r for p, r in rows.items() if p and r.format_name == "Portable Network Graphics"]
    assert sum(r.files for r in pngs) == 3 and sum(r.invalid for r in pngs) == 1
    t = report.totals
    assert (t.files, t.unidentified, t.invalid) == (8, 1, 2)
    assert t.bytes == sum(p.stat().st_size for p in payload.rglob("*") if p.is_file())
    assert t.by_extension == sum(r.by_extension for r in report.formats) >= 2
    assert t.formats == len(report.formats) - 1  # the unidentified row is no format
    # Largest first, so a curator reads the formats that matter most at the top.
    assert [r.files for r in report.formats] == sorted(
        (r.files for r in report.formats), reverse=True
    )


def test_disposed_aips_and_superseded_files_are_not_held(holdings: Holdings) -> None:
    every = _by_puid(_report(holdings, None))
    assert "fmt/40" not in every  # only in the disposed AIP
    assert "fmt/412" not in every  # the one .docx was replaced by a migration
    library = _report(holdings, "library")
    assert library.totals.files == 8  # the sample's nine, less the superseded one
    assert {r.puid for r in library.formats} == {
        "fmt/141", "fmt/18", "fmt/11", "fmt/43", "fmt/353", "fmt/101", "x-fmt/111",
        "x-fmt/18",
    }
    assert library.totals.by_extension == 2 and library.totals.unidentified == 0
    assert every[None].files == 1 and every["fmt/101"].files == 3


def test_an_unknown_or_malformed_tenant_is_said_so(holdings: Holdings) -> None:
    policy = load_format_policy(holdings.ctx.settings)
    with session_scope(holdings.ctx.sessions) as s:
        with pytest.raises(NotFoundError, match="no tenant 'nobody'"):
            format_report(s, "nobody", policy)
        with pytest.raises(InvalidRequestError, match="not a valid tenant id"):
            format_report(s, "No Body", policy)


def test_actions_come_from_the_default_policy(holdings: Holdings) -> None:
    report = _report(holdings, "museum")
    rows = _by_puid(report)
    assert (report.policy.name, report.policy.source) == ("default", "default")
    assert [(a.id, a.target_puid) for a in rows["fmt/11"].actions] == [
        ("image-to-tiff", "fmt/353")
    ]
    assert rows["x-fmt/111"].actions == [] and rows["fmt/101"].actions == []
    assert rows[None].actions == []
    pngs = [r for r in report.formats if r.format_name == "Portable Network Graphics"]
    assert all(r.actions for r in pngs)
    assert report.totals.with_action == sum(r.files for r in pngs) == 3


def _xml_policy(path: Path) -> Path:
    """A policy of one's own: XML (and nothing else) to PDF/A and to ODT."""
    shipped = json.loads(default_policy_path().read_text(encoding="utf-8"))
    chosen = ("text-to-pdfa-2b", "text-to-odt")
    document = {
        "name": "xml only",
        "actions": [a for a in shipped["actions"] if a["id"] in chosen],
        "rules": [{"name": "XML", "puids": ["fmt/101"], "preservation": list(chosen)}],
    }
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def test_a_policy_file_is_asked_for_or_set_in_the_settings(
    holdings: Holdings, tmp_path: Path
) -> None:
    mine = _xml_policy(tmp_path / "policy.json")
    settings = holdings.ctx.settings
    assert policy_path(settings) is None  # the shipped policy
    configured = settings.model_copy(update={"migration_policy": tmp_path / "configured.json"})
    assert policy_path(configured) == tmp_path / "configured.json"
    assert policy_path(configured, mine) == mine  # --policy wins
    with session_scope(holdings.ctx.sessions) as s:
        report = format_report(s, "museum", load_format_policy(settings, mine))
    assert report.policy.name == "xml only" and report.policy.source == str(mine)
    assert report.policy.sha256 == hashlib.sha256(mine.read_bytes()).hexdigest()
    rows = _by_puid(report)
    assert [a.target_puid for a in rows["fmt/101"].actions] == ["fmt/477", "fmt/290"]
    assert all(not r.actions for p, r in rows.items() if p != "fmt/101")
    assert report.totals.with_action == 2


# -- the API --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def api(holdings: Holdings) -> Iterator[TestClient]:
    with TestClient(create_app(ctx=holdings.ctx), raise_server_exceptions=False) as c:
        yield c


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_tenant_token_sees_only_its_tenant(holdings: Holdings, api: TestClient) -> None:
    mine = api.get("/api/v1/formats", headers=_bearer(holdings.museum))
    assert mine.status_code == 200, mine.text
    assert mine.json() == json.loads(_report(holdings, "museum").model_dump_json())
    named = api.get("/api/v1/formats?tenant=museum", headers=_bearer(holdings.museum))
    assert named.json() == mine.json()
    for other in ("library", "nobody"):  # another tenant and no tenant: the same 404
        theirs = api.get(f"/api/v1/formats?tenant={other}", headers=_bearer(holdings.museum))
        assert theirs.status_code == 404
        assert theirs.headers["content-type"] == "application/problem+json"
        assert theirs.json()["detail"] == f"no tenant {other!r}"


def test_an_admin_sees_every_tenant_or_one(holdings: Holdings, api: TestClient) -> None:
    every = api.get("/api/v1/formats", headers=_bearer(holdings.admin)).json()
    assert every["tenant"] is None
    assert every["totals"]["files"] == 16
    one = api.get("/api/v1/formats?tenant=library", headers=_bearer(holdings.admin)).json()
    assert one == json.loads(_report(holdings, "library").model_dump_json())
    missing = api.get("/api/v1/formats?tenant=nobody", headers=_bearer(holdings.admin))
    assert missing.status_code == 404 and missing.json()["rule"] == "tenant"
    bad = api.get("/api/v1/formats?tenant=No%20Body", headers=_bearer(holdings.admin))
    assert bad.status_code == 400 and bad.json()["rule"] == "tenant-id"
    assert api.get("/api/v1/formats").status_code == 401


# -- the CLI --------------------------------------------------------------------------------


@pytest.fixture
def cli_env(holdings: Holdings, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    settings = holdings.ctx.settings
    monkeypatch.setenv("PRESERVATION_HOME", str(settings.home_dir))
    monkeypatch.setenv("PRESERVATION_DATABASE_URL", settings.catalog_url)
    return CliRunner()


def test_cli_json_is_the_report(holdings: Holdings, cli_env: CliRunner) -> None:
    done = cli_env.invoke(cli, ["formats", "report", "--tenant", "museum", "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout) == json.loads(_report(holdings, "museum").model_dump_json())
    every = json.loads(cli_env.invoke(cli, ["formats", "report", "--json"]).stdout)
    assert every["totals"]["files"] == 16 and every["tenant"] is None


def test_cli_table_and_totals(cli_env: CliRunner) -> None:
    done = cli_env.invoke(cli, ["formats", "report", "--tenant", "museum"])
    assert done.exit_code == 0, done.output
    lines = done.stdout.splitlines()
    assert any("x-fmt/111" in line and "Plain Text File" in line for line in lines)
    assert any("unidentified" in line for line in lines)
    assert lines[-1].startswith("8 files, ")
    assert "2 invalid" in lines[-1] and "1 unidentified" in lines[-1]


def test_cli_policy_option(cli_env: CliRunner, tmp_path: Path) -> None:
    mine = str(_xml_policy(tmp_path / "policy.json"))
    args = ["formats", "report", "--tenant", "museum", "--policy", mine]
    shown = json.loads(cli_env.invoke(cli, [*args, "--json"]).stdout)
    assert shown["policy"]["source"] == mine
    xml = next(r for r in shown["formats"] if r["puid"] == "fmt/101")
    assert [a["id"] for a in xml["actions"]] == ["text-to-pdfa-2b", "text-to-odt"]
    table = cli_env.invoke(cli, args)
    assert table.exit_code == 0, table.output
    assert "fmt/477" in table.stdout and "fmt/290" in table.stdout  # a narrow table wraps
    broken = tmp_path / "broken.json"
    broken.write_text("{}", encoding="utf-8")
    refused = cli_env.invoke(cli, ["formats", "report", "--policy", str(broken)])
    assert refused.exit_code == 3 and "format-policy.schema.json" in refused.output


def test_cli_unknown_tenant_fails_clearly(cli_env: CliRunner) -> None:
    done = cli_env.invoke(cli, ["formats", "report", "--tenant", "nobody"])
    assert done.exit_code == 1
    assert "no tenant 'nobody'" in done.output
    as_json = cli_env.invoke(cli, ["formats", "report", "--tenant", "nobody", "--json"])
    assert as_json.exit_code == 1
    assert json.loads(as_json.stdout)["error"] == "NotFoundError"
    missing = cli_env.invoke(cli, ["formats", "report", "--policy", f"/{uuid.uuid4()}.json"])
    assert missing.exit_code == 2
