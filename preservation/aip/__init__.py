"""Archival Information Packages: the CSIP-in-BagIt layout, the bag, the pax tar.

One AIP version goes through three steps here (docs/architecture.md §4; ingest stage 6, §3.6):

1. :class:`AIPLayout` says where everything goes inside the version's folder
   (E-ARK CSIP inside BagIt 1.0); staging and the metadata writers fill it,
   :func:`copy_submission` and :func:`copy_schemas` add the SIP's tag files and
   the XSDs.
2. :func:`write_aip_bag` makes the folder a BagIt 1.0 bag with sha256 and
   sha512 manifests, trusting the digests staging already computed.
3. :func:`serialise_aip` writes it as one deterministic, uncompressed POSIX pax
   tar and returns the sha256 computed while writing; :func:`unpack_aip` is the
   safe way back. ``docs/aip-format.md`` explains the result to a reader with
   nothing but ``tar`` and ``sha256sum``.
"""

from preservation.aip.bag import (
    ALGORITHMS,
    BagSummary,
    decode_manifest_path,
    encode_manifest_path,
    hash_file,
    write_aip_bag,
)
from preservation.aip.layout import (
    DEFAULT_REPRESENTATION,
    AIPLayout,
    PackageEntry,
    copy_schemas,
    copy_submission,
    walk_package,
)
from preservation.aip.tarball import TarSummary, serialise_aip, unpack_aip

__all__ = [
    "ALGORITHMS",
    "DEFAULT_REPRESENTATION",
    "AIPLayout",
    "BagSummary",
    "PackageEntry",
    "TarSummary",
    "copy_schemas",
    "copy_submission",
    "decode_manifest_path",
    "encode_manifest_path",
    "hash_file",
    "serialise_aip",
    "unpack_aip",
    "walk_package",
    "write_aip_bag",
]
