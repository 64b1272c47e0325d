"""The journal sync as a Celery task, started by beat: the history leaves the database.

``preservation history sync`` without a terminal: new events are cut into
segments, committed versions sealed into a period's hash tree, the TSA asked
for what waits, and the journal files written to every site's tapes. It runs
on the ``audit`` queue, beside the other housekeeping that mounts tapes, and
gives its drives back when done.
"""

from __future__ import annotations

import json
from typing import Any

from celery import Task
from celery.utils.log import get_task_logger

from preservation.storage.service import release_drives
from workers.celery import app
from workers.tasks import context

__all__ = ["sync_journal"]

log = get_task_logger(__name__)


@app.task(
    name="workers.evidence.sync_journal",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    time_limit=6 * 3600,
)
def sync_journal(self: Task) -> dict[str, Any]:
    from preservation.errors import ConflictError
    from preservation.evidence.sync import sync_journal as sync

    ctx = context()
    try:
        report = sync(ctx)
    except ConflictError as err:  # another sync holds the lease: it does this one's work
        log.info(json.dumps({"journal": "sync", "skipped": err.message}, ensure_ascii=False))
        return {"skipped": err.message}
    finally:
        release_drives(ctx)
    summary = report.to_dict()
    log.info(json.dumps({"journal": "sync", **summary}, ensure_ascii=False, default=str))
    return summary
