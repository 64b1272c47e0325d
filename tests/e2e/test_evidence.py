"""Integrity with legal value, end to end: the journal on tape, real time-stamps, real records.

A real TSA (``openssl ts -reply``) answers on loopback with a test CA; the
archive is the embedded default with two emulated libraries; the records are
checked from a separate process that has nothing but the record, the tar and
the CA; and the history is tampered with in a copy of the archive, once per
way an insider could try, each caught by ``verify-history``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from preservation.catalog.database import session_scope
from preservation.catalog.models import JournalCopy, JournalFile, PremisEvent, Tenant
from preservation.config import Settings
from preservation.context import open_context
from preservation.evidence import journal, records
from preservation.evidence.loopback_tsa import LoopbackTsa, TsaPki, make_pki
from preservation.evidence.on_tape import read_journal
from preservation.storage.recovery import read_version_tar
from tests.conftest import require_program
from tests.e2e.test_cli_tape import SAMPLE, run

TENANT = "museum"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TsaPki:
    require_program("openssl")
    return make_pki(tmp_path_factory.mktemp("tsa"))


@pytest.fixture(scope="module")
def tsa(pki: TsaPki) -> Iterator[LoopbackTsa]:
    with LoopbackTsa(pki) as running:
        yield running


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tsa: LoopbackTsa, pki: TsaPki) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("PRESERVATION_HOME", str(home))
    # Every embedded ingest a sync point (the default is once an hour): segment per bag.
    monkeypatch.setenv("PRESERVATION_JOURNAL_INTERVAL_SECONDS", "0.001")
    monkeypatch.setenv("PRESERVATION_TAPE_CARTRIDGES_PER_SITE", "3")
    monkeypatch.setenv("PRESERVATION_TAPE_CAPACITY", str(256 << 20))
    monkeypatch.setenv("PRESERVATION_TSA_URL", tsa.url)
    monkeypatch.setenv("PRESERVATION_TSA_CERTS", str(pki.ca_cert))
    if not tsa.running:
        tsa.start()
    return home


def _ctx(home: Path) -> Any:
    return open_context(Settings(home=home))


def _tar(home: Path, aip_id: str, number: int, dest: Path) -> Path:
    ctx = _ctx(home)
    try:
        read_version_tar(ctx, aip_id, number, dest)
    finally:
        ctx.close()
    return dest


def test_the_journal_travels_on_both_sites_and_its_heads_are_time_stamped(
    home: Path, pki: TsaPki, tmp_path: Path
) -> None:
    run("ingest", str(SAMPLE), "--tenant", TENANT)
    run("ingest", str(SAMPLE), "--tenant", TENANT)
    # Each embedded ingest ended at a sync point: nothing is left to do.
    again = run("history", "sync")
    assert again["segments_cut"] == 0 and again["waiting_stamps"] == 0
    head = run("history", "head", "--tenant", TENANT)["heads"][0]
    stamped = head["latest_time_stamp"]
    assert stamped["seq"] == head["seq"] and stamped["head"] == head["head"]
    assert "Loopback TSA" in stamped["tsa"]

    ctx = _ctx(home)
    try:
        copies = {site: read_journal(ctx, TENANT, site).files for site in ctx.settings.sites}
    finally:
        ctx.close()
    assert copies["site-a"] == copies["site-b"]  # the same bytes at both sites
    files = copies["site-a"]
    segments = sorted(p for p in files if p.endswith(".jsonl") and "/evidence-" not in p)
    assert len(segments) == 2 and all(p.startswith(f"/{TENANT}/.journal/") for p in segments)

    # Checked as a stranger would: json and sha256, nothing of ours.
    prev = None
    seqs = []
    for path in segments:
        lines = files[path].decode().splitlines()
        header = json.loads(lines[0])["segment"]
        for line in lines[1:]:
            entry = json.loads(line)
            canonical = json.dumps(entry["event"], sort_keys=True, separators=(",", ":"))
            assert hashlib.sha256(canonical.encode()).hexdigest() == entry["hash"]
            assert entry["event"]["prev"] == prev
            prev = entry["hash"]
            seqs.append(entry["event"]["seq"])
        assert header["head"] == prev
        # ... and the head's time-stamp with openssl alone.
        reply = tmp_path / "reply.tsr"
        reply.write_bytes(files[path.removesuffix(".jsonl") + ".tsr"])
        checked = subprocess.run(
            [
                "openssl",
                "ts",
                "-verify",
                "-digest",
                prev,
                "-in",
                str(reply),
                "-CAfile",
                str(pki.ca_cert),
            ],
            capture_output=True,
            text=True,
        )
        assert checked.returncode == 0 and "Verification: OK" in checked.stdout, checked.stderr
    assert seqs == list(range(1, head["seq"] + 1))
    assert run("verify-history")["ok"] is True


def test_an_unreachable_tsa_never_blocks_ingest_and_stamps_later(
    home: Path, tsa: LoopbackTsa
) -> None:
    tsa.stop()
    result = run("ingest", str(SAMPLE), "--tenant", TENANT)
    assert result["state"] == "committed"
    waiting = run("history", "sync", code=3)
    assert waiting["waiting_stamps"] >= 2 and any("TSA" in p for p in waiting["problems"])
    status = run("status")["history"]
    assert status["waiting"]["segments"] == 1 and "wait for the TSA" in status["warning"]
    from preservation.monitoring import render_metrics

    ctx = _ctx(home)
    try:
        metrics = render_metrics(ctx).decode()
    finally:
        ctx.close()
    assert 'preservation_evidence_waiting_stamps{kind="segments"} 1.0' in metrics
    assert 'preservation_evidence_waiting_stamps{kind="evidence"} 1.0' in metrics

    tsa.start()
    done = run("history", "sync")
    assert done["stamped"] == 2 and done["waiting_stamps"] == 0 and done["files_written"] >= 4
    assert run("status")["history"]["warning"] is None
    assert run("verify-history")["tenants"][0]["stamps_verified"] == 1


def test_without_a_tsa_status_says_history_is_chained_only(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PRESERVATION_TSA_URL")
    run("ingest", str(SAMPLE), "--tenant", TENANT)
    history = run("status")["history"]
    assert history["tsa"] is None
    assert "chained but not time-stamped" in history["warning"]


def test_an_evidence_record_is_verified_by_a_clean_process(
    home: Path, pki: TsaPki, tmp_path: Path
) -> None:
    aip_id = run("ingest", str(SAMPLE), "--tenant", TENANT)["aip_id"]
    run("ingest", str(SAMPLE), "--tenant", "observatory")
    record = tmp_path / "v1.ers"
    run("evidence", "export", aip_id, "--to", str(record))
    tar = _tar(home, aip_id, 1, tmp_path / "v1.tar")

    nowhere = tmp_path / "clean"
    nowhere.mkdir()
    env = {"PATH": os.environ["PATH"], "PRESERVATION_HOME": str(nowhere / "no-archive")}

    def verify(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "preservation.cli", "evidence", "verify", str(record), *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=nowhere,
        )

    ok = verify("--data", str(tar), "--tsa-cert", str(pki.ca_cert), "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["ok"] is True
    assert list(nowhere.iterdir()) == []  # no data root, no catalogue, no tape

    other = tmp_path / "other.tar"
    data = bytearray(tar.read_bytes())
    data[len(data) // 2] ^= 1
    other.write_bytes(bytes(data))
    bad = verify("--data", str(other), "--tsa-cert", str(pki.ca_cert))
    assert bad.returncode == 1 and "not covered" in bad.stderr

    foreign = make_pki(tmp_path / "foreign", "Foreign TSA")
    wrong_ca = verify("--data", str(tar), "--tsa-cert", str(foreign.ca_cert))
    assert wrong_ca.returncode == 1

    # Another tenant's AIP is not found, as everywhere.
    run("evidence", "export", aip_id, "--tenant", "observatory", "--to", str(record), code=1)


def test_time_stamp_and_hash_tree_renewal(
    home: Path, pki: TsaPki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    aip_id = run("ingest", str(SAMPLE), "--tenant", TENANT)["aip_id"]
    tar = _tar(home, aip_id, 1, tmp_path / "v1.tar")

    # The TSA changes (a new key, a new CA): §5.2 renewal under the new one.
    second = make_pki(tmp_path / "second", "Second TSA")
    bundle = tmp_path / "both.pem"
    bundle.write_bytes(pki.ca_cert.read_bytes() + second.ca_cert.read_bytes())
    with LoopbackTsa(second) as new_tsa:
        monkeypatch.setenv("PRESERVATION_TSA_URL", new_tsa.url)
        monkeypatch.setenv("PRESERVATION_TSA_CERTS", str(bundle))
        renewed = run("evidence", "renew")
        assert renewed["kind"] == "renewal" and renewed["leaves"] >= 1
        record = tmp_path / "renewed.ers"
        run("evidence", "export", aip_id, "--to", str(record))
        parsed = records.parse(record.read_bytes())
        chains = parsed["archive_time_stamp_sequence"]
        assert len(chains) == 1 and len(chains[0]) == 2
        both = run(
            "evidence",
            "verify",
            str(record),
            "--data",
            str(tar),
            "--tsa-cert",
            str(pki.ca_cert),
            "--tsa-cert",
            str(second.ca_cert),
        )
        assert both["ok"] is True
        run(
            "evidence",
            "verify",
            str(record),
            "--data",
            str(tar),
            "--tsa-cert",
            str(pki.ca_cert),
            code=1,
        )

        # sha256 must give way: §5.3 renewal to sha512, the tars read back from tape.
        rehashed = run("evidence", "renew", "--hash", "sha512")
        assert rehashed["kind"] == "rehash" and rehashed["leaves"] >= 1
        record2 = tmp_path / "rehashed.ers"
        run("evidence", "export", aip_id, "--to", str(record2))
        parsed2 = records.parse(record2.read_bytes())
        algorithms = [a["algorithm"].native for a in parsed2["digest_algorithms"]]
        assert algorithms == ["sha256", "sha512"]
        assert len(parsed2["archive_time_stamp_sequence"]) == 2
        result = run(
            "evidence",
            "verify",
            str(record2),
            "--data",
            str(tar),
            "--tsa-cert",
            str(pki.ca_cert),
            "--tsa-cert",
            str(second.ca_cert),
        )
        assert result["ok"] is True
        # The renewals travel on tape too.
        sync = run("history", "sync")
        assert sync["waiting_stamps"] == 0
    ctx = _ctx(home)
    try:
        with session_scope(ctx.sessions) as s:
            paths = set(s.scalars(select(JournalFile.path).where(JournalFile.kind == "evidence")))
            on_both = s.scalar(
                select(text("count(*)")).select_from(JournalCopy)  # type: ignore[arg-type]
            )
    finally:
        ctx.close()
    assert len(paths) == 3 and on_both


# -- tampering with a copy of the archive --------------------------------------------------------


@pytest.fixture(scope="module")
def archive(
    tmp_path_factory: pytest.TempPathFactory, tsa: LoopbackTsa, pki: TsaPki
) -> Iterator[Path]:
    """One archive with a stamped journal, copied for each tampering."""
    home = tmp_path_factory.mktemp("archive") / "home"
    saved = dict(os.environ)
    os.environ.update(
        PRESERVATION_HOME=str(home),
        PRESERVATION_JOURNAL_INTERVAL_SECONDS="0.001",
        PRESERVATION_TAPE_CARTRIDGES_PER_SITE="3",
        PRESERVATION_TAPE_CAPACITY=str(256 << 20),
        PRESERVATION_TSA_URL=tsa.url,
        PRESERVATION_TSA_CERTS=str(pki.ca_cert),
    )
    try:
        if not tsa.running:
            tsa.start()
        run("ingest", str(SAMPLE), "--tenant", TENANT)
        run("ingest", str(SAMPLE), "--tenant", TENANT)
        yield home
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _events(home: Path) -> list[Any]:
    ctx = _ctx(home)
    try:
        with session_scope(ctx.sessions) as s:
            rows = list(s.scalars(select(PremisEvent).order_by(PremisEvent.seq)))
            s.expunge_all()
            return rows
    finally:
        ctx.close()


def _sql(home: Path, *statements: str, **params: Any) -> None:
    ctx = _ctx(home)
    try:
        with session_scope(ctx.sessions) as s:
            for statement in statements:
                s.execute(text(statement), params)
    finally:
        ctx.close()


def _edit(home: Path) -> int:
    _sql(home, "UPDATE premis_events SET detail = 'nothing happened' WHERE seq = 5")
    return 5


def _delete(home: Path) -> int:
    _sql(home, "DELETE FROM premis_events WHERE seq = 7")
    return 7


def _swap(home: Path) -> int:
    _sql(
        home,
        "UPDATE premis_events SET seq = -1 WHERE seq = 9",
        "UPDATE premis_events SET seq = 9 WHERE seq = 10",
        "UPDATE premis_events SET seq = 10 WHERE seq = -1",
    )
    return 9


def _insert(home: Path) -> int:
    victim = _events(home)[5]  # seq 6
    _sql(
        home,
        "UPDATE premis_events SET seq = seq + 100000 WHERE seq >= 6",
        "UPDATE premis_events SET seq = seq - 100000 + 1 WHERE seq >= 100000",
        "INSERT INTO premis_events (uuid, tenant_id, seq, type, occurred_at, detail, outcome,"
        " outcome_detail, agents, objects, prev_hash, hash) VALUES ('forged-event', :t, 6,"
        " 'deletion', :at, 'a forged event', 'success', '', '{}', '{}', :prev, :hash)",
        t=TENANT,
        at=victim.occurred_at,
        prev=victim.prev_hash,
        hash="0" * 64,
    )
    return 6


def _rewrite_consistently(home: Path) -> int:
    """Edit event 4 and recompute every hash after it, head included: the rule is public."""
    ctx = _ctx(home)
    try:
        with session_scope(ctx.sessions) as s:
            prev = None
            for ev in s.scalars(
                select(PremisEvent).where(PremisEvent.tenant_id == TENANT).order_by(PremisEvent.seq)
            ):
                if ev.seq == 4:
                    ev.detail = "a history that suits someone better"
                if ev.seq >= 4:
                    ev.prev_hash = prev
                    ev.hash = hashlib.sha256(
                        journal.canonical(journal.event_fields(ev)).encode()
                    ).hexdigest()
                prev = ev.hash
            s.get_one(Tenant, TENANT).event_head = prev
    finally:
        ctx.close()
    return 4


def _rewrite_and_resync(home: Path) -> int:
    """The insider's full attempt: a consistent rewrite, the journal's catalogue rows
    deleted, and a fresh sync that writes and time-stamps a journal of the forgery."""
    seq = _rewrite_consistently(home)
    _sql(
        home,
        "DELETE FROM journal_copies",
        "DELETE FROM journal_files",
        "DELETE FROM journal_segments",
    )
    forged = run("history", "sync")
    assert forged["segments_cut"] == 1 and forged["stamped"] == 1
    return seq


def _segment_record(home: Path, site: str) -> Path:
    """The emulated record file holding the tenant's first segment at ``site``."""
    ctx = _ctx(home)
    try:
        with session_scope(ctx.sessions) as s:
            copy = s.execute(
                select(JournalCopy.barcode, JournalCopy.start_block)
                .join(JournalFile, JournalFile.id == JournalCopy.file_id)
                .where(
                    JournalFile.kind == "segment",
                    JournalFile.tenant_id == TENANT,
                    JournalCopy.site == site,
                )
                .order_by(JournalFile.id)
                .limit(1)
            ).one()
    finally:
        ctx.close()
    return home / "tape" / site / "cartridges" / copy.barcode / f"1_{copy.start_block}_R"


def _alter_site_a_tape(home: Path) -> int:
    """Change one event's outcome inside the segment's record on one site-a cartridge."""
    block = _segment_record(home, "site-a")
    data = block.read_bytes()
    lines = data.split(b"\n")
    target = next(i for i, line in enumerate(lines) if b'"outcome":"success"' in line and i >= 3)
    lines[target] = lines[target].replace(b'"outcome":"success"', b'"outcome":"failure"', 1)
    block.write_bytes(b"\n".join(lines))
    return json.loads(lines[target])["event"]["seq"]


def _rewrite_site_a_tape_by_the_rule(home: Path) -> int:
    """Edit an event on one site-a cartridge and redo every hash after it, head included:
    the segment is whole again, and only its time-stamp gives it away."""
    block = _segment_record(home, "site-a")
    lines = block.read_bytes().split(b"\n")
    target = next(i for i, line in enumerate(lines) if b'"outcome":"success"' in line and i >= 3)
    renamed: dict[bytes, bytes] = {}
    for i in range(target, len(lines)):
        if not lines[i].startswith(b'{"event":'):
            continue
        entry = json.loads(lines[i])
        text = json.dumps(entry["event"], sort_keys=True, separators=(",", ":")).encode()
        for old, new in renamed.items():
            text = text.replace(old, new)
        if i == target:
            text = text.replace(b'"outcome":"success"', b'"outcome":"failure"', 1)
        digest = hashlib.sha256(text).hexdigest().encode()
        renamed[entry["hash"].encode()] = digest
        lines[i] = b'{"event":' + text + b',"hash":"' + digest + b'"}'
    for old, new in renamed.items():
        lines[0] = lines[0].replace(old, new)  # the header's head
    block.write_bytes(b"\n".join(lines))
    return int(json.loads(lines[target])["event"]["seq"])


def _shorten_site_a_tape(home: Path) -> int:
    """Cut bytes out of the segment on one site-a cartridge: it no longer reads whole."""
    block = _segment_record(home, "site-a")
    data = block.read_bytes()
    block.write_bytes(data[: len(data) // 2])
    return 1


@pytest.mark.parametrize(
    ("tamper", "where"),
    [
        (_edit, "database"),
        (_delete, "database"),
        (_swap, "database"),
        (_insert, "database"),
        (_rewrite_consistently, "database vs journal"),
        (_rewrite_and_resync, "database vs journal"),
        (_alter_site_a_tape, "site-a journal"),
        (_rewrite_site_a_tape_by_the_rule, "site-a journal"),
        (_shorten_site_a_tape, "site-a journal"),
    ],
    ids=[
        "edited",
        "deleted",
        "swapped",
        "inserted",
        "rewritten-consistently",
        "rewritten-and-journalled-again",
        "site-a-tape",
        "site-a-tape-rehashed",
        "site-a-tape-shortened",
    ],
)
def test_verify_history_names_where_history_was_rewritten(
    archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tamper: Any, where: str
) -> None:
    home = tmp_path / "copy"
    shutil.copytree(archive, home, symlinks=True)
    monkeypatch.setenv("PRESERVATION_HOME", str(home))
    assert run("verify-history")["ok"] is True  # the copy is as good as the original

    seq = tamper(home)
    report = run("verify-history", "--tenant", TENANT, code=1)
    first = report["tenants"][0]["first_disagreement"]
    assert first["seq"] == seq, json.dumps(report, indent=1)
    assert first["where"].startswith(where), report
    found = report["tenants"][0]["disagreements"]
    if tamper is _rewrite_and_resync:
        # The forged journal is on tape too, stamped: later than the original, which wins.
        assert any("stamped later: the journal was rewritten" in d["what"] for d in found), found
    elif where != "site-a journal":
        # Only the database lies: both tapes agree with each other and with their stamps.
        assert not any("journal" in d["where"] and "vs" not in d["where"] for d in found), found
    else:
        # Only site-a's tape lies: the database agrees with site-b's stamped journal.
        assert all(d["where"].startswith("site-a") for d in found), found


def test_a_damaged_time_stamp_reply_on_one_site_is_a_finding(
    archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "copy"
    shutil.copytree(archive, home, symlinks=True)
    monkeypatch.setenv("PRESERVATION_HOME", str(home))
    ctx = _ctx(home)
    try:
        with session_scope(ctx.sessions) as s:
            copy = s.execute(
                select(JournalCopy.barcode, JournalCopy.start_block)
                .join(JournalFile, JournalFile.id == JournalCopy.file_id)
                .where(JournalFile.kind == "stamp", JournalCopy.site == "site-a")
                .order_by(JournalFile.id)
                .limit(1)
            ).one()
    finally:
        ctx.close()
    record = home / "tape" / "site-a" / "cartridges" / copy.barcode / f"1_{copy.start_block}_R"
    data = bytearray(record.read_bytes())
    data[10:40] = bytes(30)
    record.write_bytes(bytes(data))
    report = run("verify-history", code=1)["tenants"][0]
    assert [d["where"] for d in report["disagreements"]] == [
        next(d["where"] for d in report["disagreements"] if d["where"].endswith(".tsr"))
    ]
    assert "damaged" in report["disagreements"][0]["what"]
    assert report["stamps_verified"] == report["segments"]  # site-b's replies still stand


def test_a_tsa_that_refuses_never_keeps_the_journal_off_tape(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wrong CA configured: every token is refused on arrival, and said why; the
    segments still go to tape, and are stamped once the configuration is put right."""
    good_ca = os.environ["PRESERVATION_TSA_CERTS"]
    wrong = make_pki(tmp_path / "wrong", "Wrong CA")
    monkeypatch.setenv("PRESERVATION_TSA_CERTS", str(wrong.ca_cert))
    assert run("ingest", str(SAMPLE), "--tenant", TENANT)["state"] == "committed"
    report = run("history", "sync", code=3)
    assert report["waiting_stamps"] == 2 and report["files_written"] == 0  # all on tape
    status = run("status")["history"]
    assert status["last_error"] and "wait for the TSA" in status["warning"]
    assert run("verify-history")["tenants"][0]["journal_events"] > 0
    monkeypatch.setenv("PRESERVATION_TSA_CERTS", good_ca)
    fixed = run("history", "sync")
    assert fixed["stamped"] == 2 and fixed["waiting_stamps"] == 0


def test_history_holds_and_a_rewrite_is_caught_on_both_backends(
    home: Path, catalog_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL as in production, its sessions in Brussels time: the chain hashes the
    same UTC text whatever the session's zone, and the insider's full attempt is caught."""
    monkeypatch.setenv("PRESERVATION_DATABASE_URL", catalog_url)
    monkeypatch.setenv("PGTZ", "Europe/Brussels")
    run("ingest", str(SAMPLE), "--tenant", TENANT)
    run("ingest", str(SAMPLE), "--tenant", TENANT)
    assert run("verify-history")["ok"] is True
    seq = _rewrite_and_resync(home)
    report = run("verify-history", code=1)["tenants"][0]
    assert report["first_disagreement"]["seq"] == seq
    assert report["first_disagreement"]["where"] == "database vs journal"


class _CountingPool(ProcessPoolExecutor):
    submitted: list[str] = []

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        _CountingPool.submitted.append(fn.__name__)
        return super().submit(fn, *args, **kwargs)


def test_a_long_chain_is_read_by_a_child_process_with_the_same_verdicts(
    archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past PARALLEL_EVENTS the database is read in a forked child, beside the tapes."""
    from preservation.evidence import history

    home = tmp_path / "copy"
    shutil.copytree(archive, home, symlinks=True)
    monkeypatch.setenv("PRESERVATION_HOME", str(home))
    monkeypatch.setattr(history, "PARALLEL_EVENTS", 1)
    monkeypatch.setattr(history, "ProcessPoolExecutor", _CountingPool)
    assert run("verify-history")["ok"] is True
    assert _CountingPool.submitted == ["_read_database_chain"]
    seq = _rewrite_consistently(home)
    report = run("verify-history", code=1)["tenants"][0]
    assert report["first_disagreement"] == {
        "seq": seq,
        "where": "database vs journal",
        "what": f"event {seq} in the database differs from the tape journal",
    }
