"""Virus scanning with ClamAV, a whole batch of files at a time.

``interfaces`` holds the contract (``VirusScanner``) and its answer
(``ScanReport``: engine, signature release, detections, and the files the
engine could not vouch for). ``clamd`` talks to a running daemon over its
socket, by path or by streaming the bytes; ``clamscan`` runs the command-line
scanner once per batch where there is no daemon. ``scanner_for`` picks one from
the settings, so the pipeline never names either.
"""

from __future__ import annotations

from preservation.config import Settings
from preservation.scan.clamd import ClamdScanner
from preservation.scan.clamscan import DEFAULT_DATABASE, ClamscanScanner
from preservation.scan.interfaces import Detection, ScanReport, VirusScanner

__all__ = [
    "DEFAULT_DATABASE",
    "ClamdScanner",
    "ClamscanScanner",
    "Detection",
    "ScanReport",
    "VirusScanner",
    "scanner_for",
]


def scanner_for(settings: Settings) -> VirusScanner:
    """clamd when ``settings.clamd_socket`` names one (it keeps the signatures loaded), else
    clamscan with ``settings.clamav_db``; checking that it works is the first scan's job."""
    if settings.clamd_socket:
        return ClamdScanner(settings.clamd_socket, database=settings.clamav_db)
    return ClamscanScanner(settings.clamav_db)
