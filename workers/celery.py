"""The Celery application: broker and backend from settings, queues and routing.

Queues follow docs/architecture.md §6.2: one for ingest work, one per tape site (so a site's
tape workers consume only their own queue), and one each for migration, access
and audit. Tasks live in modules named for the OAIS function they serve.

Task events are on (``worker_send_task_events``, ``task_send_sent_event``) so
that Flower, or ``celery events``, sees every task from the moment it is sent.
Publishing retries for about two minutes: a broker restart must not crash the
watcher or drop the next link of a chain between two stages.
"""

from __future__ import annotations

from celery import Celery
from kombu.entity import Queue

from preservation.config import Settings

QUEUES = ("ingest", "store.site-a", "store.site-b", "migrate", "access", "audit")
#: How often beat starts a fixity audit of every verified copy, unless the
#: settings say otherwise (``audit_interval_seconds``).
DEFAULT_AUDIT_INTERVAL = 24 * 3600.0

__all__ = ["DEFAULT_AUDIT_INTERVAL", "QUEUES", "app", "make_app"]


def make_app(settings: Settings | None = None) -> Celery:
    settings = settings or Settings()
    broker = settings.broker_url or "redis://127.0.0.1:6379/0"
    audit_every = float(settings.audit_interval_seconds)
    # A task whose worker died comes back once its visibility timeout is over; sweep
    # for such tasks a few times per timeout (at most each minute) rather than
    # kombu's default of every ~100 s, which is far longer than a short timeout.
    restore_every = max(1, min(60, settings.broker_visibility_timeout // 4))
    celery = Celery(
        "preservation",
        broker=broker,
        backend=settings.result_backend or broker,
        include=["workers.tasks", "workers.audit", "workers.evidence"],
    )
    celery.conf.update(
        task_queues=[Queue(name) for name in QUEUES],
        task_default_queue="ingest",
        task_routes={
            "workers.tasks.store_*": {"queue": "store.site-a"},
            "workers.tasks.migrate_*": {"queue": "migrate"},
            "workers.tasks.access_*": {"queue": "access"},
            "workers.tasks.audit_*": {"queue": "audit"},
            "workers.audit.*": {"queue": "audit"},
            "workers.evidence.*": {"queue": "audit"},
        },
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_send_task_events=True,
        task_send_sent_event=True,
        task_publish_retry=True,
        task_publish_retry_policy={
            "max_retries": 60,
            "interval_start": 0,
            "interval_step": 0.5,
            "interval_max": 2,
        },
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_expires=7 * 24 * 3600,
        # Priorities let a worker finish the SIPs it has started before it takes
        # new ones: later stages outrank earlier ones (0 is first with Redis).
        task_queue_max_priority=10,
        task_default_priority=5,
        broker_transport_options={
            "priority_steps": list(range(10)),
            "sep": ":",
            "queue_order_strategy": "priority",
            "visibility_timeout": settings.broker_visibility_timeout,
            "unacked_restore_interval": restore_every,
            "unacked_restore_throttle": 1,
            "global_keyprefix": f"{settings.redis_key_prefix}:",
        },
        result_backend_transport_options={"global_keyprefix": f"{settings.redis_key_prefix}:"},
        broker_connection_retry_on_startup=True,
        timezone="UTC",
        beat_schedule={
            "scan-ingest-folders": {
                "task": "workers.tasks.scan_ingest_folders",
                "schedule": max(settings.quiescent_seconds, 5.0),
                "options": {"queue": "ingest", "expires": 60},
            },
            "expire-dips": {
                "task": "workers.tasks.access_expire_dips",
                "schedule": 600.0,
                "options": {"queue": "access", "expires": 600.0},
            },
            "journal-sync": {
                "task": "workers.evidence.sync_journal",
                "schedule": settings.journal_interval_seconds,
                "options": {"queue": "audit", "expires": settings.journal_interval_seconds},
            },
            "audit-fixity": {
                "task": "workers.audit.audit_fixity",
                "schedule": audit_every,
                "options": {"queue": "audit", "expires": audit_every},
            },
        },
    )
    return celery


app = make_app()
