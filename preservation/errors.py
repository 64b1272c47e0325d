"""The one exception tree of the preservation pipeline.

Split by what the caller can do about it (as httpx does), not by where it came from::

    PreservationError
    ├── TransientError                 try again later; Celery retries these
    │   ├── DeviceBusyError            a drive or library is in use
    │   ├── SiteUnavailableError       a whole site cannot be reached
    │   ├── SIPBusyError               another runner holds the SIP's stage lease
    │   ├── BrokerUnavailableError     Redis cannot be reached
    │   ├── CatalogueContentionError   the database aborted a transaction (deadlock)
    │   └── ScannerUnavailableError    the virus scanner cannot be reached; the SIP waits
    ├── InvalidSIPError                the submission breaks a rule; it is rejected
    │   └── UnsafeArchiveError         a serialised bag tries to escape or explode
    ├── FixityMismatchError            bytes differ from their recorded digest
    ├── IdentificationError            a format engine failed on a file
    ├── ToolError                      a characterisation or validation tool failed
    │   └── ToolUnavailableError       the tool is not installed, or will not start
    ├── MetadataError                  METS/PREMIS could not be written or read
    ├── StorageError                   tape and LTFS failures
    │   ├── TapeFullError              end of medium reached
    │   ├── MediaError                 the medium failed (EIO, unreadable)
    │   │   └── OversizeBlockError     a record larger than the read buffer
    │   ├── WriteProtectedError        the cartridge refuses writes
    │   ├── WrongCartridgeError        the drive holds another cartridge
    │   ├── EndOfDataError             reading or spacing reached end of data (a normal outcome)
    │   └── LTFSFormatError            the volume is not valid LTFS
    ├── CatalogError                   the catalogue refuses a change
    │   └── NotFoundError              no such SIP, AIP, tenant, cartridge
    │       └── GoneError              it existed and was disposed of (410, its tombstone)
    ├── ConfigurationError             settings or rules are wrong
    │   ├── DataRootError              the data root or catalogue cannot be used as it is
    │   └── DestinationError           a folder to write into (recover --to) cannot take it
    ├── AccessError                    who asks may not (the API's 401 and 403)
    │   ├── AuthenticationError        no token, or an unknown or revoked one
    │   └── ForbiddenError             the token's role does not allow this
    ├── ConflictError                  the thing's state forbids it now: a hold, retention
    └── InvalidRequestError            the caller asked for something that cannot be (usage)
        ├── InvalidTenantError         a tenant id that breaks the tenant-id rule
        ├── AmbiguousIdError           an id prefix that names more than one thing
        ├── SIPPendingError            the bag already has a SIP in flight; resume that one
        ├── UploadTooLargeError        an upload past PRESERVATION_MAX_UPLOAD_BYTES
        ├── RangeNotSatisfiableError   a Range past the end of the representation (416)
        ├── SiardError                 a SIARD archive that cannot be used: names the table and rule
        └── UnsupportedMediaError      a body in a format this door does not take

Each error carries the context a curator needs (``path``, ``aip_id``, ``barcode``)
so a message can name the file and the rule without parsing strings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = [
    "AccessError",
    "AmbiguousIdError",
    "AuthenticationError",
    "BrokerUnavailableError",
    "CatalogError",
    "CatalogueContentionError",
    "ConfigurationError",
    "ConflictError",
    "DataRootError",
    "DestinationError",
    "DeviceBusyError",
    "EndOfDataError",
    "FixityMismatchError",
    "ForbiddenError",
    "GoneError",
    "IdentificationError",
    "InvalidRequestError",
    "InvalidSIPError",
    "InvalidTenantError",
    "LTFSFormatError",
    "MediaError",
    "MetadataError",
    "NotFoundError",
    "OversizeBlockError",
    "PreservationError",
    "RangeNotSatisfiableError",
    "SIPBusyError",
    "SIPPendingError",
    "ScannerUnavailableError",
    "SiardError",
    "SiteUnavailableError",
    "StorageError",
    "TapeFullError",
    "ToolError",
    "ToolUnavailableError",
    "TransientError",
    "UnsafeArchiveError",
    "UnsupportedMediaError",
    "UploadTooLargeError",
    "WriteProtectedError",
    "WrongCartridgeError",
]


class PreservationError(Exception):
    """Root of every error this package raises on purpose."""

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        aip_id: str | None = None,
        sip_id: str | None = None,
        barcode: str | None = None,
        **context: Any,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = str(path) if path is not None else None
        self.aip_id = aip_id
        self.sip_id = sip_id
        self.barcode = barcode
        self.context = context

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": type(self).__name__, "message": self.message}
        for key in ("path", "aip_id", "sip_id", "barcode"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        out.update(self.context)
        return out


class TransientError(PreservationError):
    """Worth retrying: the world may be different in a minute."""


class DeviceBusyError(TransientError):
    pass


class SiteUnavailableError(TransientError):
    pass


class BrokerUnavailableError(TransientError):
    pass


class SIPBusyError(TransientError):
    """Another worker is running a stage of this SIP: a duplicate message waits its turn."""


class CatalogueContentionError(TransientError):
    """The database broke a deadlock or a serialisation conflict by aborting this transaction.

    Nothing was written; every stage is idempotent, so running it again is the fix.
    """


class ScannerUnavailableError(TransientError):
    """The virus scanner cannot be reached or has no signatures: the SIP waits, never unscanned."""


class InvalidSIPError(PreservationError):
    """The submission breaks a rule. ``problems`` lists every problem found."""

    def __init__(self, message: str, *, problems: list[Any] | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.problems = list(problems or [])


class UnsafeArchiveError(InvalidSIPError):
    pass


class FixityMismatchError(PreservationError):
    pass


class IdentificationError(PreservationError):
    pass


class ToolError(PreservationError):
    """A characterisation or validation tool broke (not the file it was given)."""


class ToolUnavailableError(ToolError):
    """The tool is not installed or will not start; ``tool`` names it."""


class MetadataError(PreservationError):
    pass


class StorageError(PreservationError):
    pass


class TapeFullError(StorageError):
    pass


class MediaError(StorageError):
    pass


class WriteProtectedError(StorageError):
    pass


class WrongCartridgeError(StorageError):
    pass


class LTFSFormatError(StorageError):
    pass


class EndOfDataError(StorageError):
    """Reading or spacing reached end of data: normal when walking a partition."""


class OversizeBlockError(MediaError):
    """A record was larger than the read buffer; a drive cannot return part of one."""


class CatalogError(PreservationError):
    pass


class NotFoundError(CatalogError):
    pass


class GoneError(NotFoundError):
    """The thing existed and was disposed of: 410 with its tombstone.

    The context's ``tombstone`` (a dict: what it was, when and why it went)
    is sent in the problem body as it is.
    """


class ConfigurationError(PreservationError):
    pass


class DataRootError(ConfigurationError):
    """The data root is a file, cannot be made, is read-only where writing is needed,
    or holds a catalogue that is not one: the operator's to fix, never a traceback."""


class DestinationError(ConfigurationError):
    """A folder we were told to write into cannot be made or written (``recover --to``).

    Found before any tape is read, where the kernel allows: a bag recalled for
    nothing costs mounts.
    """


class AccessError(PreservationError):
    """Who is asking may not do this; never raised for another tenant's things (not found)."""


class AuthenticationError(AccessError):
    """No token, or one that is unknown or revoked."""


class ForbiddenError(AccessError):
    """The token is valid, but its role does not allow this on its own tenant's holdings."""


class ConflictError(PreservationError):
    """The request is well formed, but what it names is in a state that forbids it now
    (an AIP under legal hold or within retention, a disposal already decided)."""


class InvalidRequestError(PreservationError):
    """The request cannot work as given; nothing was started (CLI exit 2, HTTP 4xx)."""


class InvalidTenantError(InvalidRequestError):
    pass


class RangeNotSatisfiableError(InvalidRequestError):
    """A Range past the end of the representation."""


class AmbiguousIdError(InvalidRequestError):
    pass


class SIPPendingError(InvalidRequestError):
    """Ingesting the bag again would make a second AIP of it once both SIPs are resumed."""


class UploadTooLargeError(InvalidRequestError):
    """An upload went past ``PRESERVATION_MAX_UPLOAD_BYTES``; what had arrived is deleted."""


class SiardError(InvalidRequestError):
    """A SIARD archive breaks a rule of the format; ``table``, ``entry`` and ``rule`` say where.

    Raised only where the archive cannot be used at all (loading, an access copy);
    validation reports the same problems as findings instead.
    """

    def __init__(
        self,
        message: str,
        *,
        rule: str,
        table: str | None = None,
        entry: str | None = None,
        **context: Any,
    ) -> None:
        super().__init__(message, rule=rule, table=table, entry=entry, **context)
        self.rule = rule
        self.table = table
        self.entry = entry


class UnsupportedMediaError(InvalidRequestError):
    """A body in a format this door does not take (the content type names the rule)."""
