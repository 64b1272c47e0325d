"""fido's signatures, loaded in the forkserver before it forks identification workers.

The identification pool names this module as the forkserver's preload
(``preservation/identify/pool.py``): importing it reads and indexes fido's
signature files once, in the forkserver, and every worker forked from it is
born with them, instead of each worker spending a third of a second on its own
copy. A failure here is left for the workers to meet and report: the
forkserver itself must not die of it.
"""

from __future__ import annotations

import contextlib

from preservation.errors import IdentificationError

with contextlib.suppress(IdentificationError, ImportError, OSError):
    from preservation.identify.fido import load_signatures

    load_signatures()
