"""Start what the later stages need while the early ones run.

A cold ingest pays for its helpers before it can use them: the identification
workers load fido's signatures (a third of a second), ExifTool compiles its
Perl, and the validators import Pillow, pikepdf and FFmpeg's libraries. None
of that depends on the bag, so it is started first, in other processes and a
background thread, and is ready by the time identification and
characterisation ask for it. A long-running worker pays it once; the CLI
starts it before it even imports the catalogue, which is why this module
lives outside ``preservation.ingest`` and imports nothing heavy itself.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from preservation.config import Settings

if TYPE_CHECKING:
    from preservation.context import Context

log = logging.getLogger("preservation.ingest")


@dataclass
class WarmHelpers:
    """The helpers started ahead, to be handed to a context once it exists."""

    pool: Any
    tools: Any

    def into(self, ctx: Context) -> None:
        """Let ``ctx`` use them (and close them): the stages find them in its cache."""
        ctx.cache["identify_pool"] = self.pool
        ctx.cache["characterisation_tools"] = self.tools
        ctx.cache["warmed"] = True

    def close(self) -> None:
        """For a caller that never got a context to hand them to."""
        self.pool.close()
        self.tools.close()


def warm_up(settings: Settings) -> WarmHelpers:
    """Start the identification workers, ExifTool and the validators' imports; return at once."""
    from preservation.characterise import ToolBox
    from preservation.identify import IdentificationPool

    pool = IdentificationPool(
        settings.identify_engine,
        workers=settings.identify_workers or None,
        timeout=settings.identify_timeout,
    )
    pool.start()
    tools = ToolBox()
    _prepare_in_background(tools)
    return WarmHelpers(pool, tools)


def warm_up_context(ctx: Context) -> None:
    """The same for a context's own helpers (the embedded runner, a worker), once."""
    from preservation.ingest.characterise import toolbox
    from preservation.ingest.identify import identification_pool

    if ctx.cache.get("warmed"):
        return
    ctx.cache["warmed"] = True
    identification_pool(ctx).start()
    _prepare_in_background(toolbox(ctx))


def _prepare_in_background(tools: Any) -> None:
    threading.Thread(target=_prepare, args=(tools,), name="warm-up", daemon=True).start()


def _prepare(tools: Any) -> None:
    """Start ExifTool and import the validators; a failure is the stage's to report later."""
    try:
        import preservation.characterise.validation  # noqa: F401 - Pillow, pikepdf, PyAV, lxml

        tools.get("exiftool").version()
    except Exception as err:  # noqa: BLE001 - the characterise stage meets it again and says so
        log.debug("warm-up: %s", err)
