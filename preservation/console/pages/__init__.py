"""One module per page of the console, each a router mounted under ``/console``.

``account`` (log in and out, the language switch), ``dashboard``, ``search``,
``aip`` (an AIP and what a curator does with it), ``formats`` (the risk
report), ``dips`` (requests and downloads), ``admin`` (tenants, users, tokens).
"""

from preservation.console.pages import (
    account,
    admin,
    aip,
    dashboard,
    dips,
    formats,
    migrations,
    search,
)

#: Mounted in this order; ``account`` first, as its routes need no session.
ALL = [account, dashboard, search, aip, migrations, formats, dips, admin]

__all__ = ["ALL"]
