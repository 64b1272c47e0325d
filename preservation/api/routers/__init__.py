"""One router per resource; ``app.py`` mounts them all under ``/api/v1``.

``sips`` (submit, follow), ``aips`` (search, lookup, versions, events,
metadata, retention, holds, disposal requests), ``disposals`` (approval),
``audits``, ``tenants`` and ``tokens`` (admin), ``operations`` (health, metrics).
"""

from preservation.api.routers import aips, audits, disposals, operations, sips, tenants, tokens

__all__ = ["aips", "audits", "disposals", "operations", "sips", "tenants", "tokens"]
