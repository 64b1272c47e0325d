"""The archive as a web service: FastAPI, one router per resource, under ``/api/v1``.

The routers translate HTTP to the same service functions the CLI calls
(``lookup``, ``retention``, ``uploads``, ``versions``, ``tokens``,
``tenants``, ``audit.runs``, ``monitoring``) and back; none holds logic of its
own. Errors are the library's one exception tree, mapped to statuses in one
place (``problems.py``) and sent as RFC 9457 problem details.
"""

from preservation.api.app import create_app

__all__ = ["create_app"]
