"""A prepared AIP version goes to the workers as the ingest's tail: store per site, then commit."""

from __future__ import annotations

from pathlib import Path

import pytest

from preservation.config import Settings
from preservation.context import open_context
from preservation.errors import ConfigurationError
from preservation.versions import load_version_submitter


def test_store_at_each_site_on_its_queue_then_commit() -> None:
    from workers.tasks import version_workflow

    flow = version_workflow(7, ("site-a", "site-b"))
    assert [t.task for t in flow.tasks] == ["workers.tasks.store_version"] * 2
    assert sorted(t.options["queue"] for t in flow.tasks) == ["store.site-a", "store.site-b"]
    assert [tuple(t.args) for t in flow.tasks] == [(7, "site-a"), (7, "site-b")]
    assert flow.body.task == "workers.tasks.commit_version"
    assert tuple(flow.body.args) == (7,)


def test_the_version_tasks_retry_transient_errors_like_the_stages() -> None:
    from preservation.errors import TransientError
    from workers.tasks import commit_version, store_version

    for task in (store_version, commit_version):
        assert task.acks_late and task.reject_on_worker_lost
        assert task.autoretry_for == (TransientError,)


def test_the_version_submitter_is_named_by_a_setting(tmp_path: Path) -> None:
    from workers.tasks import submit_version

    ctx = open_context(Settings(home=tmp_path / "var"))
    try:
        assert load_version_submitter(ctx) is submit_version
        ctx.settings.version_submitter = "no_such_module_xyz:f"
        with pytest.raises(ConfigurationError, match="version_submitter"):
            load_version_submitter(ctx)
    finally:
        ctx.close()
