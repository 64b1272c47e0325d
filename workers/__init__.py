"""The distributed engine: Celery tasks over the library's stage functions.

``workers.celery`` builds the app (queues and routing); ``workers.tasks`` holds
thin tasks that take ids, call one ``preservation`` function and return.
"""

from workers.celery import QUEUES, app

__all__ = ["QUEUES", "app"]
