"""SIP intake: strict BagIt validation, safe unpacking of serialised bags, payload staging.

The first stages of ingest (docs/architecture.md §3.2, §3.3: "validate" and "stage") and the safety
rules of §9 live here. A bag directory is judged by :func:`validate_bag`, which
lists every problem rather than the first; a ``.tar``/``.tar.gz``/``.zip`` is
first unpacked by :func:`open_serialised_bag` under size, count and ratio limits;
ingest then calls :func:`validate_and_stage`, which reads each payload byte once
to check the bag's manifests, copy the file and compute the AIP's digests.
A tenant's BagIt profile is checked by :func:`check_profile`, a pure function
of the facts :func:`bag_facts` reads from a bag validation has accepted.
"""

from preservation.sip.baginfo import (
    BagDeclaration,
    PayloadOxum,
    first_tag,
    measure_payload,
    payload_oxum,
    read_bag_info,
)
from preservation.sip.profile import BagFacts, BagItProfile, bag_facts, check_profile, parse_profile
from preservation.sip.report import Problem, ValidationReport
from preservation.sip.serialised import open_serialised_bag
from preservation.sip.staging import stage_payload
from preservation.sip.validation import StagedFile, validate_and_stage, validate_bag

__all__ = [
    "BagDeclaration",
    "BagFacts",
    "BagItProfile",
    "PayloadOxum",
    "Problem",
    "StagedFile",
    "ValidationReport",
    "bag_facts",
    "check_profile",
    "first_tag",
    "measure_payload",
    "open_serialised_bag",
    "parse_profile",
    "payload_oxum",
    "read_bag_info",
    "stage_payload",
    "validate_and_stage",
    "validate_bag",
]
