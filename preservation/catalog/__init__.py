"""Data Management: the catalogue of tenants, SIPs, AIPs, files, events and tape copies.

``models`` holds the tables, ``database`` builds engines and runs Alembic, and
``service`` is the one module of query and command functions the rest of the
code calls.
"""

from preservation.catalog import service
from preservation.catalog.database import make_engine, make_sessionmaker, session_scope, upgrade
from preservation.catalog.models import (
    AIP,
    SIP,
    Agent,
    AIPState,
    AIPVersion,
    Cartridge,
    CartridgeState,
    CopyStatus,
    File,
    PremisEvent,
    SIPState,
    StageLease,
    TapeCopy,
    Tenant,
)

__all__ = [
    "AIP",
    "SIP",
    "AIPState",
    "AIPVersion",
    "Agent",
    "Cartridge",
    "CartridgeState",
    "CopyStatus",
    "File",
    "PremisEvent",
    "SIPState",
    "StageLease",
    "TapeCopy",
    "Tenant",
    "make_engine",
    "make_sessionmaker",
    "service",
    "session_scope",
    "upgrade",
]
