"""The migrations page (being built)."""

from __future__ import annotations

from preservation.console.deps import router as console_router

router = console_router()
