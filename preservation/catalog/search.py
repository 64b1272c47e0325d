"""Finding AIPs: the full-text index, the format index, and cursor-paged queries.

One behaviour on two engines. SQLite (the embedded default) answers ``q``
from an FTS5 table, PostgreSQL from a ``tsvector`` column with a GIN index
(both made by migration 0003). They tokenise differently, so neither is
given raw text: :func:`words` reduces every text to lower-case words of
letters and digits, diacritics removed, and both engines index and query
exactly those words. That is what makes "the same answers on both" a
property rather than a hope, and it suits a multilingual archive: "Liège",
"LIEGE" and "liege" are one word; nothing is stemmed, because stemming is
per language and the archive's records are in several.

The index is written by the catalogue service in the transaction that
creates or changes an AIP's description (:func:`index_aips`), and rebuilt
from the catalogue by :func:`reindex` (``preservation db reindex``).

Paging is by cursor over a stable order (newest first, then id), never by
offset: a page costs the same at the millionth result as at the first, and
there is no result ceiling.
"""

from __future__ import annotations

import base64
import binascii
import json
import operator
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, and_, delete, insert, or_, select, text
from sqlalchemy.orm import Session

from preservation.catalog.models import (
    AIP,
    SIP,
    AIPFormat,
    AIPState,
    AIPText,
    AIPVersion,
    File,
)
from preservation.errors import InvalidRequestError
from preservation.metadata.mets import dublin_core_element

__all__ = [
    "Page",
    "PropertyFilter",
    "SearchQuery",
    "decode_cursor",
    "encode_cursor",
    "encode_position",
    "formats_of",
    "index_aips",
    "invalid_files_of",
    "parse_property_filter",
    "reindex",
    "search_aips",
    "words",
]

#: Longer "words" are noise (digests, base64) and PostgreSQL refuses lexemes past 2 KB.
MAX_WORD = 64
#: An AIP's body stays well inside PostgreSQL's 1 MB tsvector limit.
MAX_BODY_CHARS = 400_000
_WORD = re.compile(r"[^\W_]+")
_INDEX_BATCH = 500


def words(value: str) -> list[str]:
    """The words search sees in ``value``: letters and digits, lower case, no diacritics."""
    decomposed = unicodedata.normalize("NFKD", value)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    return [w for w in _WORD.findall(bare) if len(w) <= MAX_WORD]


def _body(texts: Iterable[str]) -> str:
    """Each word once, in the order first seen: the index needs no repeats."""
    seen: dict[str, None] = {}
    size = 0
    for value in texts:
        for word in words(value):
            if word not in seen:
                size += len(word) + 1
                if size > MAX_BODY_CHARS:
                    return " ".join(seen)
                seen[word] = None
    return " ".join(seen)


def _texts_of(aip: AIP, sip: SIP | None, names: Sequence[str]) -> Iterable[str]:
    yield aip.source_bag_name
    if aip.external_identifier:
        yield aip.external_identifier
    for values in (aip.descriptive or {}).values():
        yield from values
    if sip is not None:
        for label, values in (sip.bag_info or {}).items():
            # A label with a Dublin Core meaning is in the record above; once a
            # curator's record replaces the mapped one, its old words must not
            # keep finding the AIP.
            if aip.descriptive is not None and dublin_core_element(label) is not None:
                continue
            yield from values
    yield from names


def index_aips(session: Session, aip_ids: Sequence[str]) -> None:
    """(Re)write the search and format index rows of these AIPs; bulk, in batches.

    The words are the AIP's names and records, its files' names, and for a
    database (a SIARD file) its table and column names and descriptions.

    Reads each batch's AIPs, SIPs and file rows in three statements and
    writes with one delete and one insert per table, so indexing the whole
    catalogue never costs a statement per AIP, let alone per file.
    """
    for start in range(0, len(aip_ids), _INDEX_BATCH):
        batch = list(aip_ids[start : start + _INDEX_BATCH])
        aips = list(session.scalars(select(AIP).where(AIP.id.in_(batch))))
        sips = {
            s.id: s
            for s in session.scalars(select(SIP).where(SIP.id.in_([a.sip_id for a in aips])))
        }
        names: dict[str, list[str]] = defaultdict(list)
        formats: dict[str, Counter[str]] = defaultdict(Counter)
        # Every file of every version: a migration's new files are found too.
        rows = session.execute(
            select(AIPVersion.aip_id, File.original_name, File.aip_path, File.puid, _DESCRIBED)
            .join(File, File.aip_version_id == AIPVersion.id)
            .where(AIPVersion.aip_id.in_(batch))
        )
        for aip_id, original, aip_path, puid, described in rows:
            names[aip_id].append(_file_words(original or aip_path or ""))
            names[aip_id].extend(_described(described))
            if puid:
                formats[aip_id][puid] += 1
        # Files of a SIP not yet assigned to a version (an AIP being built).
        unassigned = session.execute(
            select(File.sip_id, File.original_name, File.puid, _DESCRIBED).where(
                File.sip_id.in_(list(sips)), File.aip_version_id.is_(None)
            )
        )
        by_sip = {a.sip_id: a.id for a in aips}
        for sip_id, original, puid, described in unassigned:
            names[by_sip[sip_id]].append(_file_words(original))
            names[by_sip[sip_id]].extend(_described(described))
            if puid:
                formats[by_sip[sip_id]][puid] += 1
        session.execute(delete(AIPText).where(AIPText.aip_id.in_(batch)))
        session.execute(delete(AIPFormat).where(AIPFormat.aip_id.in_(batch)))
        texts = [
            {
                "aip_id": a.id,
                "tenant_id": a.tenant_id,
                "body": _body(_texts_of(a, sips.get(a.sip_id), names[a.id])),
            }
            for a in aips
        ]
        if texts:
            session.execute(insert(AIPText), texts)
        fmt_rows = [
            {"aip_id": a.id, "tenant_id": a.tenant_id, "puid": puid, "files": n}
            for a in aips
            for puid, n in sorted(formats[a.id].items())
        ]
        if fmt_rows:
            session.execute(insert(AIPFormat), fmt_rows)


#: A database's table and column names and descriptions (characterise/properties.py,
#: kind ``database``): read out of the JSON in SQL, so other files' properties stay there.
_DESCRIBED = File.properties["described"]


def _described(value: Any) -> list[str]:
    """The ``described`` property as strings; a METS read back may give it as one text."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def _file_words(name: str) -> str:
    """A file's path as words: ``data/Box 1/Liège_1921.TIF`` is found by "liege" and "1921"."""
    return name.removeprefix("data/")


def reindex(
    session: Session,
    *,
    tenant_id: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Rebuild the search index from the catalogue (all tenants, or one); the AIPs indexed."""
    stmt = select(AIP.id).order_by(AIP.id)
    if tenant_id is not None:
        stmt = stmt.where(AIP.tenant_id == tenant_id)
    ids = list(session.scalars(stmt))
    for start in range(0, len(ids), _INDEX_BATCH * 4):
        index_aips(session, ids[start : start + _INDEX_BATCH * 4])
        if progress is not None:
            progress(min(start + _INDEX_BATCH * 4, len(ids)), len(ids))
    if progress is not None and not ids:
        progress(0, 0)
    return len(ids)


# -- queries ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchQuery:
    """What a search may ask; every field narrows it, none is required."""

    tenant_id: str | None = None  # None: every tenant (an admin)
    q: str | None = None
    puid: str | None = None
    external_identifier: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    state: AIPState | None = None
    # True: only AIPs holding a file that failed format validation; False: only those without.
    invalid: bool | None = None
    # Significant properties one file must have (with ``puid``, that file's format):
    # "width>10000", "sample_rate<44100", "video_codec=FFV1" (see parse_property_filter).
    properties: tuple[PropertyFilter, ...] = ()


@dataclass(frozen=True)
class PropertyFilter:
    """One condition on a file's significant property: ``width >= 10000``."""

    name: str
    op: str  # = != < <= > >=
    value: float | str | bool


@dataclass(frozen=True)
class Page:
    aips: list[AIP]
    next_cursor: str | None


def encode_cursor(aip: AIP) -> str:
    return encode_position(aip.created_at, aip.id)


def encode_position(created_at: datetime, row_id: str) -> str:
    """An opaque cursor for a (created, id) position: any list ordered newest first."""
    created = _utc(created_at).isoformat(timespec="microseconds")
    raw = json.dumps([created, row_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The position a cursor names; a cursor we did not make is a client error."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, aip_id = json.loads(raw)
        when = datetime.fromisoformat(created)
        if not isinstance(aip_id, str) or when.tzinfo is None:
            raise ValueError("not a cursor")
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise InvalidRequestError(
            f"cursor {cursor[:40]!r} is not one this service gave out: pass the "
            "next_cursor of the previous page unchanged",
            rule="cursor",
            field="cursor",
        ) from exc
    return when, aip_id


def _utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _fts_query(session: Session, q: str) -> Any | None:
    """The ``q`` condition on AIP ids, per engine; None when ``q`` has no words.

    Every word must occur (AND). A word ending in ``*`` matches as a prefix.
    """
    terms: list[tuple[str, bool]] = []
    for raw in q.split():
        prefix = raw.endswith("*")
        found = words(raw)
        terms += [(w, prefix and i == len(found) - 1) for i, w in enumerate(found)]
    if not terms:
        return None
    if session.get_bind().dialect.name == "postgresql":
        tsquery = " & ".join(f"{w}:*" if prefix else w for w, prefix in terms)
        return AIP.id.in_(
            select(AIPText.aip_id).where(
                text("aip_texts.document @@ to_tsquery('simple', :tsq)").bindparams(tsq=tsquery)
            )
        )
    match = " ".join(f'"{w}"*' if prefix else f'"{w}"' for w, prefix in terms)
    return AIP.id.in_(
        select(AIPText.aip_id).where(
            AIPText.id.in_(
                text("SELECT rowid FROM aip_texts_fts WHERE aip_texts_fts MATCH :fts").bindparams(
                    fts=match
                )
            )
        )
    )


def search_aips(
    session: Session, query: SearchQuery, *, cursor: str | None = None, limit: int = 50
) -> Page:
    """One page of the AIPs ``query`` selects, newest first, and the cursor of the next."""
    stmt = select(AIP)
    if query.tenant_id is not None:
        stmt = stmt.where(AIP.tenant_id == query.tenant_id)
    if query.q:
        condition = _fts_query(session, query.q)
        if condition is None:
            return Page([], None)
        stmt = stmt.where(condition)
    if query.puid:
        formats = select(AIPFormat.aip_id).where(AIPFormat.puid == query.puid)
        if query.tenant_id is not None:
            formats = formats.where(AIPFormat.tenant_id == query.tenant_id)
        stmt = stmt.where(AIP.id.in_(formats))
    if query.external_identifier:
        stmt = stmt.where(AIP.external_identifier == query.external_identifier)
    if query.created_after:
        stmt = stmt.where(AIP.created_at >= _utc(query.created_after))
    if query.created_before:
        stmt = stmt.where(AIP.created_at < _utc(query.created_before))
    if query.state:
        stmt = stmt.where(AIP.state == query.state)
    if query.invalid is not None:
        has_invalid = invalid_files_of(AIP.id).exists()
        stmt = stmt.where(has_invalid if query.invalid else ~has_invalid)
    if query.properties:
        stmt = stmt.where(_file_with(query.properties, query.puid).exists())
    if cursor:
        created, aip_id = decode_cursor(cursor)
        stmt = stmt.where(
            or_(AIP.created_at < created, and_(AIP.created_at == created, AIP.id < aip_id))
        )
    stmt = stmt.order_by(AIP.created_at.desc(), AIP.id.desc()).limit(limit + 1)
    found = list(session.scalars(stmt))
    more = len(found) > limit
    found = found[:limit]
    return Page(found, encode_cursor(found[-1]) if more and found else None)


def formats_of(session: Session, aip_ids: Sequence[str]) -> dict[str, dict[str, int]]:
    """The PUIDs each AIP holds (any version) and its files in each: one query for a page.

    Read from the format index the PUID filter uses, so a result list shows
    exactly the formats a search by PUID finds it by.
    """
    found: dict[str, dict[str, int]] = defaultdict(dict)
    if aip_ids:
        for aip_id, puid, files in session.execute(
            select(AIPFormat.aip_id, AIPFormat.puid, AIPFormat.files)
            .where(AIPFormat.aip_id.in_(list(aip_ids)))
            .order_by(AIPFormat.aip_id, AIPFormat.files.desc(), AIPFormat.puid)
        ):
            found[aip_id][puid] = int(files)
    return dict(found)


def invalid_files_of(aip_id: Any) -> Select[Any]:
    """The files of an AIP (any version) that a format validator found malformed.

    Served by the partial index ``ix_files_invalid``: valid files, nearly all
    of them, are never read.
    """
    return _files_of(aip_id).where(File.valid.is_(False))


def _files_of(aip_id: Any) -> Select[Any]:
    """The files of every version of an AIP (versions are forward deltas)."""
    return (
        select(File.id)
        .join(AIPVersion, File.aip_version_id == AIPVersion.id)
        .where(AIPVersion.aip_id == aip_id)
    )


_PROPERTY_FILTER = re.compile(r"([a-z_]+)\s*(<=|>=|!=|=|<|>)\s*(.+)")
_OPERATORS = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def parse_property_filter(text: str) -> PropertyFilter:
    """``width>10000``, ``video_codec=FFV1``, ``encrypted=true``: a search's property condition.

    Names are the significant properties of preservation/characterise/properties.py;
    numbers compare as numbers, ``true``/``false`` as booleans, anything else
    as text (only ``=`` and ``!=``).
    """
    from preservation.metadata.mets import PROPERTY_NAMES, PROPERTY_TYPES

    match = _PROPERTY_FILTER.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None or match.group(1) not in PROPERTY_NAMES:
        raise InvalidRequestError(
            f"{text!r} is not a property condition: write NAME OP VALUE, e.g. width>10000 or "
            f"video_codec=FFV1, with NAME one of {', '.join(sorted(PROPERTY_NAMES))} and OP one "
            "of = != < <= > >=",
            rule="property-filter",
            value=text,
        )
    name, op, raw = match.groups()
    kind = PROPERTY_TYPES.get(name, str)
    value: float | str | bool
    try:
        if kind is bool:
            if raw.lower() not in ("true", "false"):
                raise ValueError(raw)
            value = raw.lower() == "true"
        elif kind in (int, float):
            value = float(raw)
        else:
            value = raw
    except ValueError:
        raise InvalidRequestError(
            f"{text!r}: {name} takes a {'number' if kind in (int, float) else kind.__name__}, "
            f"and {raw!r} is not one",
            rule="property-filter",
            value=text,
        ) from None
    if op not in ("=", "!=") and not isinstance(value, float):
        raise InvalidRequestError(
            f"{text!r}: {name} compares only with = or !=", rule="property-filter", value=text
        )
    return PropertyFilter(name, op, value)


def _file_with(filters: Sequence[PropertyFilter], puid: str | None) -> Select[Any]:
    """One file of the AIP (any version) meeting every condition, in ``puid`` when given.

    The properties are JSON (``files.properties``): SQLite's ``json_extract``
    and PostgreSQL's ``->>`` read them through SQLAlchemy's JSON comparator, so
    one query serves both catalogues.
    """
    stmt = _files_of(AIP.id).where(File.properties.is_not(None))
    if puid:
        stmt = stmt.where(File.puid == puid)
    for f in filters:
        field = File.properties[f.name]
        if isinstance(f.value, bool):
            column: Any = field.as_boolean()
        elif isinstance(f.value, float):
            column = field.as_float()
        else:
            column = field.as_string()
        stmt = stmt.where(_OPERATORS[f.op](column, f.value))
    return stmt.correlate(AIP)
