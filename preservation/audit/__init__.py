"""Fixity audits: every verified copy read back whole and checked against its sha256.

``fixity`` plans an audit in tape order (each cartridge mounted once, read
front to back) and runs it; the CLI's ``preservation audit`` and the Celery
task on the ``audit`` queue are thin shells over it.
"""

from preservation.audit.fixity import (
    AuditReport,
    CopyVerdict,
    ReplicationFinding,
    audit_copies,
    plan_audit,
    under_replicated_versions,
)

__all__ = [
    "AuditReport",
    "CopyVerdict",
    "ReplicationFinding",
    "audit_copies",
    "plan_audit",
    "under_replicated_versions",
]
