"""Celery tasks: ids in, one library call, nothing else.

Every task is idempotent by SIP id because every stage function is: a task
redelivered after a worker died (``acks_late`` + ``reject_on_worker_lost``)
finds its stage done and returns, or redoes it from scratch. A rejected SIP
stops its chain with ``Ignore`` (nothing to retry); a ``TransientError`` (a
site down, a drive busy) retries with backoff for as long as it takes, because
an AIP with one copy must wait rather than be called safe.
"""

from __future__ import annotations

from typing import Any

from celery import Task, chain, chord
from celery.exceptions import Ignore
from celery.signals import worker_process_shutdown, worker_shutdown
from celery.utils.log import get_task_logger

from preservation import ingest, versions
from preservation.config import Settings
from preservation.context import Context, open_context
from preservation.errors import InvalidSIPError, TransientError
from workers.celery import app

log = get_task_logger(__name__)

_context: Context | None = None


def context() -> Context:
    """One Context per worker process, built on first use (never at import)."""
    global _context
    if _context is None:
        _context = open_context(Settings(), migrate=False)
    return _context


@worker_shutdown.connect
@worker_process_shutdown.connect
def _close_context(**_: Any) -> None:
    """A clean stop ends tape batches: cartridges unmount and index partitions are written.

    Tape workers run one prefork child per drive, and each child holds its own
    context (and cartridge): ``worker_process_shutdown`` reaches the children,
    ``worker_shutdown`` the solo pool's single process.
    """
    global _context
    if _context is not None:
        _context.close()
        _context = None


STAGE_OPTIONS: dict[str, Any] = {
    "bind": True,
    "acks_late": True,
    "reject_on_worker_lost": True,
    "autoretry_for": (TransientError,),
    "retry_backoff": 2,
    "retry_backoff_max": 300,
    "retry_jitter": True,
    "max_retries": None,
    "time_limit": 6 * 3600,
    "soft_time_limit": 6 * 3600 - 60,
}


def _run(stage: str, sip_id: str, *args: Any) -> str:
    try:
        ingest.run_stage(context(), stage, sip_id, *args)
    except InvalidSIPError as err:
        log.info("SIP %s rejected at %s: %s", sip_id, stage, err)
        raise Ignore() from err
    return sip_id


@app.task(name="workers.tasks.validate_sip", **STAGE_OPTIONS)
def validate_sip(self: Task, sip_id: str) -> str:
    return _run("validate", sip_id)


@app.task(name="workers.tasks.scan_sip", **STAGE_OPTIONS)
def scan_sip(self: Task, sip_id: str) -> str:
    return _run("scan", sip_id)


@app.task(name="workers.tasks.identify_sip", **STAGE_OPTIONS)
def identify_sip(self: Task, sip_id: str) -> str:
    return _run("identify", sip_id)


@app.task(name="workers.tasks.characterise_sip", **STAGE_OPTIONS)
def characterise_sip(self: Task, sip_id: str) -> str:
    return _run("characterise", sip_id)


@app.task(name="workers.tasks.describe_sip", **STAGE_OPTIONS)
def describe_sip(self: Task, sip_id: str) -> str:
    return _run("describe", sip_id)


@app.task(name="workers.tasks.package_sip", **STAGE_OPTIONS)
def package_sip(self: Task, sip_id: str) -> str:
    return _run("package", sip_id)


@app.task(name="workers.tasks.store_sip", **STAGE_OPTIONS)
def store_sip(self: Task, sip_id: str, site: str) -> str:
    return _run("store", sip_id, site)


@app.task(name="workers.tasks.commit_sip", **STAGE_OPTIONS)
def commit_sip(self: Task, sip_id: str) -> str:
    return _run("commit", sip_id)


def ingest_workflow(sip_id: str, sites: tuple[str, ...]) -> Any:
    """validate+stage → scan → identify → characterise → describe → package
    → (store A ‖ store B) → commit."""
    stores = [store_sip.si(sip_id, site).set(queue=f"store.{site}", priority=3) for site in sites]
    return chain(
        validate_sip.si(sip_id).set(priority=8),
        scan_sip.si(sip_id).set(priority=8),
        identify_sip.si(sip_id).set(priority=7),
        characterise_sip.si(sip_id).set(priority=7),
        describe_sip.si(sip_id).set(priority=6),
        package_sip.si(sip_id).set(priority=5),
        chord(stores, commit_sip.si(sip_id).set(priority=1)),
    )


# -- new AIP versions (preservation/versions.py): store at each site, then commit ----------


@app.task(name="workers.tasks.store_version", **STAGE_OPTIONS)
def store_version(self: Task, version_id: int, site: str) -> int:
    versions.store_version_at(context(), version_id, site)
    return version_id


@app.task(name="workers.tasks.commit_version", **STAGE_OPTIONS)
def commit_version(self: Task, version_id: int) -> int:
    versions.commit_version(context(), version_id)
    return version_id


def version_workflow(version_id: int, sites: tuple[str, ...]) -> Any:
    """(store A ‖ store B) → commit: the tail of the ingest workflow, for a prepared version."""
    stores = [
        store_version.si(version_id, site).set(queue=f"store.{site}", priority=3) for site in sites
    ]
    return chord(stores, commit_version.si(version_id).set(priority=1))


def submit_version(version_id: int) -> None:
    """``PRESERVATION_VERSION_SUBMITTER``'s default: the version's workflow, on the workers."""
    version_workflow(version_id, tuple(context().settings.sites)).apply_async()


# -- format migrations (preservation/migrate/): one task per AIP on the migrate queue ----


@app.task(name="workers.tasks.migrate_aip", **STAGE_OPTIONS)
def migrate_aip(self: Task, item_id: int) -> str:
    from preservation.migrate.run import migrate_item

    return migrate_item(context(), item_id)


def submit_migration(migration_id: str) -> None:
    """``PRESERVATION_MIGRATION_SUBMITTER``'s default: one task per AIP of the request."""
    from preservation.migrate.run import item_ids

    for item_id in item_ids(context(), migration_id):
        migrate_aip.apply_async(args=[item_id], queue="migrate")


# -- access (preservation/access/): DIP requests served in recall batches ----------------


@app.task(
    name="workers.tasks.access_recall_batch",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    time_limit=7 * 24 * 3600,
)
def access_recall_batch(self: Task) -> dict[str, Any]:
    """Serve every queued DIP request in one batch (one mount per cartridge)."""
    from preservation.access.recall import run_batch

    ctx = context()
    report = run_batch(ctx)
    if report.requeued:  # drives busy or a site down: one more batch, after the backoff
        self.apply_async(countdown=report.retry_after or ctx.settings.recall_window_seconds)
    return {k: v for k, v in report.to_dict().items() if k != "failed_copies"}


@app.task(name="workers.tasks.access_expire_dips", bind=True, acks_late=True)
def access_expire_dips(self: Task) -> list[str]:
    """Beat task: expired DIPs leave the cache even when no batch runs; and a safety net:
    requests whose batch task was lost (a broker restarted empty) get one."""
    from preservation.access.cache import evict
    from preservation.access.recall import waiting

    ctx = context()
    if waiting(ctx):
        access_recall_batch.apply_async()
    return evict(ctx)


def submit_dip(dip_id: str) -> None:
    """``PRESERVATION_DIP_SUBMITTER``'s default: a batch after the window.

    Each request queues its own batch task at ``now + window``; the first to
    run takes every request queued by then, and the others find nothing left.
    """
    access_recall_batch.apply_async(countdown=context().settings.recall_window_seconds)


# What each skipped bag was last logged with, in this worker process: a bag that
# waits for an hour is logged when its reason changes, not at every scan.
_TOLD: dict[str, str] = {}


@app.task(name="workers.tasks.scan_ingest_folders", bind=True, acks_late=True)
def scan_ingest_folders(self: Task) -> list[str]:
    """Beat task: claim ready bags and start their workflows.

    What the foreground ``watch`` prints goes to the worker's log instead: an
    ``ingest/`` folder that is not a tenant id at every scan (its bags are
    never taken), and each bag left where it is, with why.
    """
    from preservation import hotfolder
    from preservation.tenants import TENANT_ID_RULE

    ctx = context()
    for folder in hotfolder.invalid_tenant_folders(ctx.settings.ingest_dir):
        log.warning(
            "ingest/%s: not a valid tenant id (%s); its bags are not taken",
            folder.name,
            TENANT_ID_RULE,
        )
    seen: dict[str, str] = {}

    def skipped(candidate: hotfolder.Candidate) -> None:
        key = str(candidate.path)
        seen[key] = candidate.lasting_reason
        if _TOLD.get(key) != candidate.lasting_reason:
            log.info("skipped %s/%s: %s", candidate.tenant, candidate.path.name, candidate.reason)

    started = ingest.scan_and_claim(ctx, submit=submit, skipped=skipped)
    _TOLD.clear()
    _TOLD.update(seen)
    for sip_id in started:
        log.info("claimed SIP %s", sip_id)
    return started


def submit(sip_id: str) -> None:
    ingest_workflow(sip_id, tuple(context().settings.sites)).apply_async()
