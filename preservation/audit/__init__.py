"""Fixity audits: every verified copy read back whole and checked against its sha256.

``fixity`` plans an audit in tape order (each cartridge mounted once, read
front to back) and runs it; the CLI's ``preservation audit`` and the Celery
task on the ``audit`` queue are thin shells over it.
"""

from preservation.audit.fixity import AuditReport, CopyVerdict, audit_copies, plan_audit

__all__ = ["AuditReport", "CopyVerdict", "audit_copies", "plan_audit"]
