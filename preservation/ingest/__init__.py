"""Ingest as plain, idempotent stage functions of a SIP id: one module per stage.

In order: ``receive`` registers a submission; ``validate`` checks the bag and
stages its payload; ``scan`` looks for viruses; ``identify`` names every file's
format; ``characterise`` measures and validates the files by format;
``describe`` writes METS + PREMIS; ``package`` makes the AIP tar; ``store``
writes it to every site and verifies it; ``commit`` makes the AIP active.
``reject`` puts a bag aside with its report; ``runner`` runs the stages, in
this process or one by name for a Celery task.
"""

from preservation.ingest.receive import receive, scan_and_claim
from preservation.ingest.reject import reject
from preservation.ingest.runner import (
    STAGE_FUNCTIONS,
    STAGES,
    TERMINAL_STATES,
    IngestResult,
    open_sites,
    pending_sips,
    result_of,
    resume,
    run_ingest,
    run_sip,
    run_stage,
)
from preservation.ingest.staging import bag_name, sip_bag_dir, staging_dir
from preservation.ingest.validate import duplicate_problems

__all__ = [
    "STAGES",
    "STAGE_FUNCTIONS",
    "TERMINAL_STATES",
    "IngestResult",
    "bag_name",
    "duplicate_problems",
    "open_sites",
    "pending_sips",
    "receive",
    "reject",
    "result_of",
    "resume",
    "run_ingest",
    "run_sip",
    "run_stage",
    "scan_and_claim",
    "sip_bag_dir",
    "staging_dir",
]
