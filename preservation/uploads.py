"""Bags that arrive over HTTP: streamed to disk, then handed to the hot folder's own path.

An upload becomes a SIP by the same road as a bag dropped in a tenant's
ingest folder, so every rule applies alike (validation, the tenant's
archiving rules, rejection to ``ingest/<tenant>/rejected/`` with its report):

1. the body is streamed to ``ingest/<tenant>/.uploads/<random>.part`` (hidden:
   the watcher ignores it), counted against ``PRESERVATION_MAX_UPLOAD_BYTES``
   and hashed as it comes, never held in memory;
2. once whole, it is renamed into ``ingest/<tenant>/.claimed/<sip-id>/`` , the
   place a watcher's claim puts a dropped bag, and registered as that SIP;
   a crash between the two is finished by the next scan's orphaned-claim pass;
3. the SIP is handed to the workers (a broker) or to the in-process runner.

An ``Idempotency-Key`` makes a retried upload the same SIP: the key, the
tenant and the body's sha256 are stored with the SIP id. The same key with
other bytes is refused (a client bug that must not pass silently).

What is refused before a byte is kept: a content type that is not a
serialised bag, a body whose first bytes are not what its content type says,
a declared length over the limit. What arrives over the limit, or short of
its declared length, is deleted at once.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from preservation.catalog import service
from preservation.catalog.database import session_scope
from preservation.catalog.models import IdempotencyKey
from preservation.context import Context
from preservation.errors import (
    ConflictError,
    InvalidRequestError,
    UnsupportedMediaError,
    UploadTooLargeError,
)
from preservation.tenants import check_tenant_id

__all__ = [
    "CONTENT_TYPES",
    "Upload",
    "UploadedSIP",
    "accept_upload",
    "check_bag_name",
    "discard_upload",
    "receive_stream",
    "suffix_for",
]

#: The serialisations a bag may arrive in, and the suffix the unpacker knows them by.
CONTENT_TYPES = {
    "application/zip": ".zip",
    "application/x-tar": ".tar",
    "application/gzip": ".tar.gz",
}


def _looks_like(suffix: str, head: bytes) -> bool:
    """The first bytes match the serialisation (a wrong Content-Type is caught here)."""
    if suffix == ".zip":
        return head.startswith((b"PK\x03\x04", b"PK\x05\x06"))
    if suffix == ".tar.gz":
        return head.startswith(b"\x1f\x8b")
    return len(head) >= 262 and head[257:262] == b"ustar"


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._ -]{0,199}$")
_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
#: Bytes gathered before each write.
WRITE_SIZE = 4 << 20


def suffix_for(content_type: str | None) -> str:
    """The serialisation a content type names; 415 for any other body."""
    bare = (content_type or "").split(";", 1)[0].strip().lower()
    if bare not in CONTENT_TYPES:
        raise UnsupportedMediaError(
            f"a SIP is uploaded as a serialised bag: Content-Type must be one of "
            f"{', '.join(CONTENT_TYPES)}, not {bare or '(none)'!r}",
            rule="content-type",
            field="Content-Type",
        )
    return CONTENT_TYPES[bare]


def check_bag_name(name: str | None, fallback: str) -> str:
    """The bag's name as the submitter gave it: one plain file name, no path, no ``..``."""
    if name is None or name == "":
        return fallback
    for suffix in (".tar.gz", ".tgz", ".tar", ".zip"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    if not _NAME.fullmatch(name) or ".." in name:
        raise InvalidRequestError(
            f"bag name {name[:80]!r} must be one plain name of letters, digits, '.', '_', "
            "'-' and spaces (no path, no '..'), at most 200 characters",
            rule="bag-name",
            field="name",
        )
    return name


def check_idempotency_key(key: str | None) -> str | None:
    if key is None:
        return None
    if not _KEY.fullmatch(key):
        raise InvalidRequestError(
            "Idempotency-Key must be 1-255 visible ASCII characters",
            rule="idempotency-key",
            field="Idempotency-Key",
        )
    return key


@dataclass(frozen=True)
class Upload:
    """A body safely on disk: where, how big, its sha256 and the serialisation."""

    path: Path
    size: int
    sha256: str | None  # only when asked for (an Idempotency-Key)
    suffix: str


@dataclass(frozen=True)
class UploadedSIP:
    sip_id: str
    created: bool  # False: an Idempotency-Key named an earlier upload


def _uploads_dir(ctx: Context, tenant: str) -> Path:
    return ctx.settings.ingest_dir / tenant / ".uploads"


async def receive_stream(
    ctx: Context,
    tenant: str,
    chunks: AsyncIterator[bytes],
    *,
    content_type: str | None,
    declared_length: int | None,
    digest_body: bool = True,
) -> Upload:
    """Write the body to disk as it arrives, one pass: size limit, magic bytes, sha256.

    Raises before anything is kept; the partial file is removed on every failure,
    a client that disconnects included. The server hands the body over in small
    pieces (64 KiB), so they are gathered into large writes: a system call per
    piece cost as much as receiving it. The sha256 is only for an
    ``Idempotency-Key`` (``digest_body``): validation reads every byte again
    against the bag's own manifests, so without a key hashing here would be a
    third pass for nothing, and it is a third of an upload's CPU.
    """
    check_tenant_id(tenant, source="tenant")
    suffix = suffix_for(content_type)
    limit = ctx.settings.max_upload_bytes
    if declared_length is not None and declared_length > limit:
        raise UploadTooLargeError(
            f"the upload declares {declared_length} bytes; the limit is {limit} "
            "(PRESERVATION_MAX_UPLOAD_BYTES)",
            rule="max-upload-bytes",
            limit=limit,
        )
    folder = _uploads_dir(ctx, tenant)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{secrets.token_hex(16)}.part"
    digest = hashlib.sha256() if digest_body else None
    size = 0
    head = b""
    ok = False
    # One buffer for the whole upload: growing and freeing one per write cost a
    # map, an unmap and a page fault per page, more than the write itself.
    buffer = bytearray(WRITE_SIZE)
    filled = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o640)
    try:
        with os.fdopen(fd, "wb", buffering=0) as out:

            def write(data: memoryview | bytes) -> None:
                if digest is not None:
                    digest.update(data)
                done = 0
                while done < len(data):
                    done += out.write(data[done:]) or 0

            def flush() -> None:
                nonlocal filled
                if filled:
                    with memoryview(buffer) as view:
                        write(view[:filled])
                    filled = 0

            async for chunk in chunks:
                if not chunk:
                    continue
                size += len(chunk)
                if size > limit:
                    raise UploadTooLargeError(
                        f"the upload passed the limit of {limit} bytes "
                        "(PRESERVATION_MAX_UPLOAD_BYTES); nothing was kept",
                        rule="max-upload-bytes",
                        limit=limit,
                    )
                if len(head) < 512:
                    head += chunk[: 512 - len(head)]
                if filled + len(chunk) > WRITE_SIZE:
                    flush()
                if len(chunk) >= WRITE_SIZE:
                    write(chunk)
                else:
                    buffer[filled : filled + len(chunk)] = chunk
                    filled += len(chunk)
            flush()
            # A 202 promises the SIP: its bytes must survive a crash right after it.
            os.fsync(out.fileno())
        if declared_length is not None and size != declared_length:
            raise InvalidRequestError(
                f"the upload ended after {size} of the {declared_length} bytes its "
                "Content-Length declared; nothing was kept",
                rule="truncated-upload",
                field="body",
            )
        if size == 0:
            raise InvalidRequestError(
                "the upload is empty: send the serialised bag as the request body",
                rule="empty-upload",
                field="body",
            )
        if not _looks_like(suffix, head):
            raise UnsupportedMediaError(
                f"the body does not start like a {suffix.lstrip('.')} file, which its "
                f"Content-Type {content_type!r} says it is",
                rule="content-type-mismatch",
                field="Content-Type",
            )
        ok = True
    finally:
        if not ok:
            path.unlink(missing_ok=True)
    return Upload(
        path=path, size=size, sha256=digest.hexdigest() if digest else None, suffix=suffix
    )


def _fsync_dir(folder: Path) -> None:
    """Make a rename into ``folder`` durable (the name, not only the bytes)."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def discard_upload(upload: Upload) -> None:
    upload.path.unlink(missing_ok=True)


def accept_upload(
    ctx: Context,
    tenant: str,
    upload: Upload,
    *,
    name: str | None = None,
    idempotency_key: str | None = None,
) -> UploadedSIP:
    """Make the upload a claimed SIP (or find the one its key already made).

    The claim (a rename) comes first, then one transaction writes the key and
    the SIP together: a key never names a SIP that does not exist, and a crash
    after the rename leaves an orphaned claim that the next scan registers.
    """
    from preservation.ingest import bag_name
    from preservation.rules import rules_for

    key = check_idempotency_key(idempotency_key)
    if key is not None and upload.sha256 is None:
        raise ValueError("an upload with an Idempotency-Key must be received with its digest")
    sip_id = str(uuid.uuid4())
    bag = check_bag_name(name, f"upload-{sip_id[:8]}")
    organisation = rules_for(ctx.settings, tenant).organisation
    claim_dir = ctx.settings.ingest_dir / tenant / ".claimed" / sip_id
    claim_dir.mkdir(parents=True)
    target = claim_dir / f"{bag}{upload.suffix}"
    os.rename(upload.path, target)
    _fsync_dir(claim_dir)
    try:
        with session_scope(ctx.sessions) as s:
            service.ensure_tenant(s, tenant, organisation)
            if key is not None:
                s.add(
                    IdempotencyKey(
                        tenant_id=tenant, key=key, sip_id=sip_id, body_sha256=upload.sha256 or ""
                    )
                )
                s.flush()
            service.create_sip(
                s,
                tenant_id=tenant,
                name=bag_name(target),
                source_path=str(target),
                sip_id=sip_id,
            )
    except IntegrityError:
        target.unlink(missing_ok=True)
        claim_dir.rmdir()
        with session_scope(ctx.sessions) as s:
            earlier = s.scalar(
                select(IdempotencyKey).where(
                    IdempotencyKey.tenant_id == tenant, IdempotencyKey.key == key
                )
            )
            if earlier is None:  # not the key: some other integrity failure
                raise
            same, earlier_sip = earlier.body_sha256 == upload.sha256, earlier.sip_id
        if not same:
            raise ConflictError(
                f"Idempotency-Key {key!r} was used for another body (SIP {earlier_sip}); "
                "use a new key for a new upload",
                rule="idempotency-key-reused",
                sip_id=earlier_sip,
            ) from None
        return UploadedSIP(sip_id=earlier_sip, created=False)
    except BaseException:
        target.unlink(missing_ok=True)
        claim_dir.rmdir()
        raise
    return UploadedSIP(sip_id=sip_id, created=True)
