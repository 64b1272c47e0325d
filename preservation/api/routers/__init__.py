"""One router per resource; ``app.py`` mounts them all under ``/api/v1``.

``sips`` (submit, follow), ``aips`` (search, lookup, versions, events,
metadata, retention, holds, disposal requests), ``disposals`` (approval),
``audits``, ``formats`` (the format risk report), ``tenants`` and ``tokens`` (admin),
``operations`` (health, metrics).
"""

from preservation.api.routers import (
    aips,
    audits,
    disposals,
    formats,
    operations,
    sips,
    tenants,
    tokens,
)

__all__ = [
    "aips",
    "audits",
    "disposals",
    "formats",
    "operations",
    "sips",
    "tenants",
    "tokens",
]
