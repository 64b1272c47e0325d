"""The Celery application: broker and backend from settings, queues and routing.

Queues follow DESIGN §6: one for ingest work, one per tape site (so a site's
tape workers consume only their own queue), and one each for migration, access
and audit. Tasks live in modules named for the OAIS function they serve.
"""

from __future__ import annotations

from celery import Celery
from kombu.entity import Queue

from preservation.config import Settings

QUEUES = ("ingest", "store.site-a", "store.site-b", "migrate", "access", "audit")

__all__ = ["QUEUES", "app", "make_app"]


def make_app(settings: Settings | None = None) -> Celery:
    settings = settings or Settings()
    broker = settings.broker_url or "redis://127.0.0.1:6379/0"
    celery = Celery(
        "preservation",
        broker=broker,
        backend=settings.result_backend or broker,
        include=["workers.tasks"],
    )
    celery.conf.update(
        task_queues=[Queue(name) for name in QUEUES],
        task_default_queue="ingest",
        task_routes={
            "workers.tasks.store_*": {"queue": "store.site-a"},
            "workers.tasks.migrate_*": {"queue": "migrate"},
            "workers.tasks.access_*": {"queue": "access"},
            "workers.tasks.audit_*": {"queue": "audit"},
        },
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
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
        },
    )
    return celery


app = make_app()
