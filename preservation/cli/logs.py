"""Where the library's log lines go when a person, not a log shipper, is reading.

The stages log one JSON object per line (``ingest.runner._log_stage``), which is
right for a log shipper and wrong on a terminal next to progress bars. So the
command prints nothing below a warning, and turns a JSON line into
``key=value`` text, unless ``PRESERVATION_LOG_FORMAT=json`` asks for the raw
lines (deployments that collect stderr).
"""

from __future__ import annotations

import json
import logging
import os

__all__ = ["configure_logging"]


class _HumanFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if message.startswith("{"):
            try:
                fields = json.loads(message)
            except ValueError:
                fields = None
            if isinstance(fields, dict):
                message = " ".join(f"{k}={v}" for k, v in fields.items())
        text = f"{record.levelname.lower()}: {message}"
        if record.exc_info and os.environ.get("PRESERVATION_DEBUG"):
            text += "\n" + self.formatException(record.exc_info)
        return text


def configure_logging(*, as_json: bool = False) -> None:
    """One stderr handler on the ``preservation`` logger, set once per process."""
    logger = logging.getLogger("preservation")
    if any(getattr(h, "_preservation_cli", False) for h in logger.handlers):
        return
    handler = logging.StreamHandler()
    handler._preservation_cli = True  # type: ignore[attr-defined]
    if os.environ.get("PRESERVATION_LOG_FORMAT", "").lower() == "json":
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.setLevel(logging.INFO)
    else:
        handler.setFormatter(_HumanFormatter())
        # Under --json, stdout is the one answer; warnings still reach stderr.
        logger.setLevel(logging.WARNING)
    logger.addHandler(handler)
    logger.propagate = False
