"""Celery tasks: a few lines each, ids in, one library call, nothing else."""

from __future__ import annotations
