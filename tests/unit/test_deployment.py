"""compose.yaml is a valid deployment; the Celery app has the queues of docs/architecture.md §6."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import IN_CI

ROOT = Path(__file__).resolve().parents[2]


def test_compose_file_validates_with_docker_compose() -> None:
    tool = shutil.which("docker-compose")
    if tool is None:
        message = "docker-compose (Debian package) is not installed"
        pytest.fail(message) if IN_CI else pytest.skip(message)
    done = subprocess.run(
        [tool, "-f", str(ROOT / "compose.yaml"), "config"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    config = yaml.safe_load(done.stdout)
    services = config["services"]
    assert {
        "redis",
        "postgres",
        "ingest-worker",
        "tape-worker-site-a",
        "tape-worker-site-b",
        "watcher",
        "beat",
    } <= set(services)
    for name in ("redis", "postgres", "ingest-worker", "tape-worker-site-a", "watcher"):
        assert "healthcheck" in services[name], name
    assert "store.site-a" in services["tape-worker-site-a"]["command"]
    # One prefork child per drive of the site's library, each taking one task at a time.
    for site in ("a", "b"):
        service = services[f"tape-worker-site-{site}"]
        command = service["command"]
        drives = service["environment"]["PRESERVATION_TAPE_DRIVES_PER_SITE"]
        assert command[command.index("--pool") + 1] == "prefork"
        assert command[command.index("--concurrency") + 1] == str(drives) == "2"
        assert command[command.index("--prefetch-multiplier") + 1] == "1"
    assert "audit" in services["audit-worker"]["command"]
    # The API answers its health check, which probes the catalogue, the broker and each site.
    assert services["api"]["command"][:2] == ["preservation", "api"]
    assert "/healthz" in str(services["api"]["healthcheck"]["test"])
    assert {"ingest", "tape-site-a", "tape-site-b"} <= set(config["volumes"])


def test_the_image_can_run_the_flower_service() -> None:
    """compose.yaml runs Flower from the one image, so the image must install it."""
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    assert "flower" in compose["services"]["flower"]["command"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    installs = [line for line in dockerfile.splitlines() if "pip install" in line]
    assert any("flower" in line or "monitoring" in line for line in installs), installs


def test_celery_app_queues_and_routes() -> None:
    from workers import QUEUES, app

    assert QUEUES == ("ingest", "store.site-a", "store.site-b", "migrate", "access", "audit")
    assert [q.name for q in app.conf.task_queues] == list(QUEUES)
    assert app.conf.task_acks_late and app.conf.task_reject_on_worker_lost
    assert "scan-ingest-folders" in app.conf.beat_schedule
    # Flower and `celery events` see tasks only when workers and clients send events.
    assert app.conf.worker_send_task_events and app.conf.task_send_sent_event
    audit = app.conf.beat_schedule["audit-fixity"]
    assert audit["task"] == "workers.audit.audit_fixity"
    assert audit["options"]["queue"] == "audit" and audit["schedule"] == 24 * 3600
    assert app.amqp.router.route({}, "workers.audit.audit_fixity")["queue"].name == "audit"
    from workers.tasks import ingest_workflow

    flow = ingest_workflow("sip-1", ("site-a", "site-b"))
    names = [t.task for t in flow.tasks[:-1]]
    assert names == [
        "workers.tasks.validate_sip",
        "workers.tasks.scan_sip",
        "workers.tasks.identify_sip",
        "workers.tasks.characterise_sip",
        "workers.tasks.describe_sip",
        "workers.tasks.package_sip",
    ]
    chord = flow.tasks[-1]
    assert sorted(t.options["queue"] for t in chord.tasks) == ["store.site-a", "store.site-b"]
    assert chord.body.task == "workers.tasks.commit_sip"
