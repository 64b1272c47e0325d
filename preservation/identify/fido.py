"""fido (Open Preservation Foundation) as a ``FormatEngine``, loaded once per process.

Why not just call ``fido.fido.Fido.identify_file``:

* ``Fido()`` with no arguments looks for ``formats-v104.xml``, which the 1.6.1
  wheel does not ship; we pass the files named by its own ``conf/versions.xml``
  (``formats-v109.xml``, ``format_extensions.xml``, ``container-signature-*.xml``).
* ``identify_file`` re-parses the 190 KB container-signature XML and rebuilds
  its regular expressions for *every* ZIP or OLE2 file, and ``match_formats``
  walks ElementTree nodes and the ``re`` module cache (2,316 patterns against a
  2,084-entry cache) for every pattern of every file. Here the signatures are
  read once per process into flat tuples of compiled patterns.
* Results arrive through a print callback; we want return values.
* fido tries every one of its ~1,900 beginning-of-file patterns on every
  file. Most of them start with a literal byte (``\\A\\x89PNG``...), so the
  formats are indexed once by the first bytes their patterns can match, and a
  file is tried only against the formats its first byte allows, in fido's own
  order: the same answers, a fraction of the regex calls.

The decision logic is fido's own, step for step (signature pass with fido's
priority pruning, then ZIP/OLE2 container signatures, then the extension
fallback), using fido's loader, buffer sizes and container packages, so our
answers are fido's answers; ``tests/unit/identify/test_fido.py`` checks that
against stock ``Fido.identify_file`` on every sample kind. One answer is ours:
where fido says ZIP or nothing, ``containers.siard_container`` looks for a
SIARD 2.1/2.2 archive, which fido's 2020 container signatures cannot see, and
the result's warning says so.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from preservation.errors import IdentificationError
from preservation.identify.containers import (
    SIARD_PUIDS,
    has_zip_end,
    siard_container,
    zip_listing_found,
)
from preservation.identify.interfaces import Basis, Identification

__all__ = ["FidoEngine", "load_signatures", "signature_loads"]

_BOF, _EOF, _VAR, _IGNORED = 0, 1, 2, 3
_POSITIONS = {"BOF": _BOF, "EOF": _EOF, "VAR": _VAR, "IFB": _VAR}

_NEVER = re.compile(rb"(?!)")
_ZIP = "x-fmt/263"  # "ZIP Format": where the SIARD container check looks further


class _LazyPattern:
    """A fido pattern compiled on first use, with the literal bytes any match must hold.

    Compiling all ~2,400 patterns is most of a worker's start-up, yet the
    first-byte index means a worker tries only the few hundred its files'
    first bytes allow: so each is compiled when first asked for, and kept.
    (Two threads racing to compile one pattern both get a correct regex.)

    Most attempts fail, and a regex is a slow way to fail: a match must begin
    with the pattern's literal prefix (``bytes.startswith``), and a search
    must find its longest run of literal bytes somewhere in the buffer (``in``,
    a C ``memchr``/two-way scan). Both come from ``re``'s own parse of the
    pattern, so they skip only what the regex would reject anyway: one DXF
    pattern alone searched every text file's 64 KB for a ``0`` followed by a
    newline, a fifth of the identify stage.
    """

    __slots__ = ("_anchor", "_at", "_compiled", "_gap_required", "_required", "pattern")

    def __init__(self, pattern: bytes) -> None:
        self.pattern = pattern
        self._compiled: re.Pattern[bytes] | None = None
        self._anchor = b""  # literal bytes a match has at offset _at
        self._at = 0
        self._required = b""  # checked before a search
        self._gap_required = b""  # checked before a match

    def compiled(self) -> re.Pattern[bytes]:
        regex = self._compiled
        if regex is None:
            try:
                regex = re.compile(self.pattern)
            except re.error:  # a broken signature matches nothing, as fido would skip it
                regex = _NEVER
            else:
                self._at, self._anchor, required, gap = _literals(self.pattern)
                # Scanning 64 KB for a run costs more than most regexes take to
                # fail, so it is done only where the regex would scan too: a
                # search for a long run, or a match that begins past a wide gap.
                if len(required) >= 6 and not (self._at == 0 and len(self._anchor) >= 3):
                    self._required = required  # (``re`` finds a literal start fast itself)
                if gap and len(required) >= 4:
                    self._gap_required = required
            self._compiled = regex
        return regex

    def match(self, buffer: bytes) -> re.Match[bytes] | None:
        regex = self.compiled()
        if not buffer.startswith(self._anchor, self._at) or self._gap_required not in buffer:
            return None
        return regex.match(buffer)

    def search(self, buffer: bytes) -> re.Match[bytes] | None:
        regex = self.compiled()
        if self._required not in buffer:
            return None
        return regex.search(buffer)


def _literals(pattern: bytes) -> tuple[int, bytes, bytes, bool]:
    """What every match of ``pattern`` holds: (offset, anchor, longest literal run, wide gap).

    Only the top level of the parse is read: a sequence whose items must all
    match in order, so its literal items are in every match. ``anchor`` is the
    first run of literal bytes when everything before it has a fixed width
    (``\\A.{8}WAVE``: offset 8, ``WAVE``), so a match must hold it at that
    offset. Anything inside a group, a repeat or an alternation, and any
    pattern with case folding, counts for nothing. ``wide gap`` says whether
    the sequence begins with a repeat of at least 1024 bytes, or one whose
    length may vary by 4096 or more (``\\A.{32768,70468}``, ``\\A.{0,65536}``): a
    match that tries what follows at each offset of a wide window, up to 0.5 ms
    a try for the ISO 9660 patterns.
    """
    try:
        from re import _constants as c  # type: ignore[attr-defined]
        from re import _parser as parser  # type: ignore[attr-defined]

        parsed = parser.parse(pattern, 0)
    except Exception:  # noqa: BLE001 - any doubt means "no literals"
        return 0, b"", b"", False
    if parsed.state.flags & (re.IGNORECASE | re.LOCALE):
        return 0, b"", b"", False
    one_byte = (c.ANY, c.IN, c.NOT_LITERAL)
    width: int | None = 0  # the fixed width of what came so far; None once one varies
    at, anchor = 0, b""
    runs: list[bytes] = []
    run = bytearray()
    gap = False

    def end_run() -> None:
        nonlocal run, width, at, anchor
        if not run:
            return
        runs.append(bytes(run))
        if not anchor and width is not None:
            at, anchor = width, bytes(run)
        if width is not None:
            width += len(run)
        run = bytearray()

    for op, av in parsed:
        if op is c.LITERAL:
            run.append(av)
            continue
        end_run()
        if op is c.AT and av in (c.AT_BEGINNING, c.AT_BEGINNING_STRING) and width == 0:
            continue  # zero width, at the start
        if not anchor and width == 0 and op in (c.MAX_REPEAT, c.MIN_REPEAT):
            gap = av[0] >= 1024 or av[1] - av[0] >= 4096
        if width is not None and op in one_byte:
            width += 1
        elif (
            width is not None
            and op in (c.MAX_REPEAT, c.MIN_REPEAT)
            and av[0] == av[1]
            and len(av[2]) == 1
            and av[2][0][0] in one_byte
        ):
            width += av[0]
        else:
            width = None
    end_run()
    return at, anchor, max(runs, key=len, default=b""), gap


Pattern = tuple[int, _LazyPattern]


@dataclass(frozen=True, slots=True, eq=False)
class _Format:
    """One PRONOM/fido format, reduced to what matching needs; compared by identity, like fido."""

    puid: str
    name: str | None
    version: str | None
    mime: str | None
    beats: frozenset[str]  # PUIDs this format has priority over
    signatures: tuple[tuple[str | None, tuple[Pattern, ...]], ...]
    container: str | None  # "zip", "tar", "ole" or None


@dataclass(frozen=True, slots=True)
class _Signatures:
    fido: Any  # the loaded fido.fido.Fido, kept for its buffer sizes and package classes
    formats: tuple[_Format, ...]
    # formats_by_first_byte[b]: the formats, in fido's order, that a file whose
    # first byte is b can match at all (an empty file tries them all).
    formats_by_first_byte: tuple[tuple[_Format, ...], ...]
    by_puid: dict[str, _Format]
    by_extension: dict[str, tuple[_Format, ...]]
    containers: dict[str, dict[str, Any]]  # "ZIP"/"OLE2" -> fido's extracted signatures
    version: str
    release: str


_lock = threading.Lock()
_loaded: _Signatures | None = None
_loads = 0


def signature_loads() -> int:
    """How many times this process has read fido's signature files (should be 0 or 1)."""
    return _loads


def _text(element: ET.Element, tag: str) -> str | None:
    found = element.find(tag)
    return found.text if found is not None and found.text else None


def _compile_format(element: ET.Element, beats: frozenset[str]) -> _Format:
    signatures = []
    for sig in element.findall("signature"):
        patterns: list[Pattern] = []
        for pat in sig.findall("pattern"):
            position = _POSITIONS.get(_text(pat, "position") or "", _IGNORED)
            if position == _IGNORED:
                continue  # fido skips positions it does not know; so do we
            patterns.append((position, _LazyPattern((_text(pat, "regex") or "").encode("utf8"))))
        signatures.append((sig.findtext("name"), tuple(patterns)))
    puid = _text(element, "puid") or ""
    container = _text(element, "container") or ("ole" if puid == "fmt/111" else None)
    return _Format(
        puid=puid,
        name=_text(element, "name"),
        version=_text(element, "version"),
        mime=_text(element, "mime"),
        beats=beats,
        signatures=tuple(signatures),
        container=container,
    )


_ANY_BYTE = frozenset(range(256))


_PREFIX = b"(?s)\\A"
_SPECIAL = frozenset(b"\\.[](){}?*+|^$")
_OPTIONAL_AFTER = frozenset(b"?*{")


def _literal_first_byte(pattern: bytes) -> int | None:
    """The fast path for fido's usual ``(?s)\\A<literal>...``: that literal byte, else None.

    Reading the source text is some 50 times cheaper than ``re``'s parser, and
    covers most of fido's patterns; anything unusual goes to the parser.
    """
    if not pattern.startswith(_PREFIX) or b"|" in pattern:
        return None
    rest = pattern[len(_PREFIX) :]
    if rest[:2] == b"\\x" and len(rest) >= 4:
        try:
            byte, after = int(rest[2:4], 16), rest[4:5]
        except ValueError:
            return None
    elif rest[:1] == b"\\" and len(rest) >= 2 and not chr(rest[1]).isalnum():
        byte, after = rest[1], rest[2:3]
    elif rest and rest[0] not in _SPECIAL:
        byte, after = rest[0], rest[1:2]
    else:
        return None
    if after and after[0] in _OPTIONAL_AFTER:
        return None  # "a?", "a*", "a{0,2}": the literal may be absent
    return byte


def _first_bytes(regex: re.Pattern[bytes] | _LazyPattern) -> frozenset[int]:
    """Every byte a match of ``regex`` at the start of a buffer can begin with.

    Conservative: anything this analysis does not fully understand (case
    folding, categories, optional first items, look-arounds) counts as "any
    byte", so the index can only ever skip a format that could not match.
    Works from the pattern's text: nothing needs compiling to be indexed.
    """
    if isinstance(regex, re.Pattern) and regex.flags & re.IGNORECASE:
        return _ANY_BYTE
    literal = _literal_first_byte(regex.pattern)  # "(?s)\\A" + literal: no flag to fold case
    if literal is not None:
        return frozenset((literal,))
    return _parsed_first_bytes(regex)


def _parsed_first_bytes(regex: re.Pattern[bytes] | _LazyPattern) -> frozenset[int]:
    """The general case, from ``re``'s own parse tree (inline flags included)."""
    try:
        from re import _constants as c  # type: ignore[attr-defined]
        from re import _parser as parser  # type: ignore[attr-defined]

        flags = regex.flags if isinstance(regex, re.Pattern) else 0
        parsed = parser.parse(regex.pattern, flags)
    except Exception:  # noqa: BLE001 - any doubt means "any byte"
        return _ANY_BYTE
    if parsed.state.flags & (re.IGNORECASE | re.LOCALE):
        return _ANY_BYTE

    def first(items: Any) -> frozenset[int] | None:
        """The first-byte set of a sequence; None when it can match the empty string."""
        for op, av in items:
            if op is c.AT and av in (c.AT_BEGINNING, c.AT_BEGINNING_STRING):
                continue  # zero width, at the start: look at what follows
            if op is c.LITERAL:
                return frozenset((av,))
            if op is c.NOT_LITERAL:
                return _ANY_BYTE - {av}
            if op is c.IN:
                return _charset(av)
            if op is c.SUBPATTERN:
                inner = first(av[3])
                return _ANY_BYTE if inner is None else inner
            if op is c.BRANCH:
                sets = [first(branch) for branch in av[1]]
                if any(x is None for x in sets):
                    return _ANY_BYTE
                return frozenset().union(*sets)  # type: ignore[arg-type]
            if op in (c.MAX_REPEAT, c.MIN_REPEAT, getattr(c, "POSSESSIVE_REPEAT", None)):
                low, _high, body = av
                inner = first(body)
                return _ANY_BYTE if low == 0 or inner is None else inner
            return _ANY_BYTE
        return None

    def _charset(items: Any) -> frozenset[int]:
        out: set[int] = set()
        for op, av in items:
            if op is c.NEGATE:
                return _ANY_BYTE
            if op is c.LITERAL:
                out.add(av)
            elif op is c.RANGE:
                out.update(range(av[0], av[1] + 1))
            else:
                return _ANY_BYTE
        return frozenset(out)

    found = first(list(parsed))
    return _ANY_BYTE if found is None else found


def _format_first_bytes(fmt: _Format) -> frozenset[int]:
    """Bytes a file may start with and still match one of the format's signatures."""
    out: set[int] = set()
    for _name, patterns in fmt.signatures:
        bof = next((regex for position, regex in patterns if position == _BOF), None)
        if bof is None:
            return _ANY_BYTE  # a signature with no start-of-file pattern can match anything
        out |= _first_bytes(bof)
        if len(out) == 256:
            break
    return frozenset(out)


def _index_by_first_byte(formats: tuple[_Format, ...]) -> tuple[tuple[_Format, ...], ...]:
    lists: list[list[_Format]] = [[] for _ in range(256)]
    for fmt in formats:  # in fido's order, so every list keeps it
        for byte in _format_first_bytes(fmt):
            lists[byte].append(fmt)
    return tuple(tuple(formats_for_byte) for formats_for_byte in lists)


def _load() -> _Signatures:
    """Read fido's shipped signature files and compile them (the expensive part)."""
    global _loads
    import fido as fido_pkg  # type: ignore[import-untyped]
    from fido.fido import Fido  # type: ignore[import-untyped]
    from fido.versions import get_local_versions  # type: ignore[import-untyped]

    conf = fido_pkg.CONFIG_DIR
    versions = get_local_versions(conf)
    format_files = [versions.pronom_signature, versions.fido_extension_signature]
    container_file = versions.pronom_container_signature
    missing = [f for f in [*format_files, container_file] if not os.path.exists(Path(conf, f))]
    if missing:
        raise IdentificationError(f"fido signature files missing from {conf}: {', '.join(missing)}")

    saved_cache_size = re._MAXCACHE  # type: ignore[attr-defined]
    try:
        # handle_matches must never fire: we call fido's matching steps ourselves.
        engine = Fido(
            quiet=True, conf_dir=conf, format_files=format_files, handle_matches=_no_printing
        )
    finally:
        re._MAXCACHE = saved_cache_size  # type: ignore[attr-defined] # Fido() sets it globally
    engine.containersignature_file = container_file  # Fido() ignores the argument

    formats = tuple(
        _compile_format(el, engine.puid_has_priority_over_map[engine.get_puid(el)])
        for el in engine.formats
    )
    by_extension: dict[str, list[_Format]] = {}
    for el, fmt in zip(engine.formats, formats, strict=True):
        for ext in {e.text for e in el.findall("extension") if e.text}:
            by_extension.setdefault(ext, []).append(fmt)

    container_doc = ET.parse(Path(conf, container_file))
    containers = {}
    for kind in ("ZIP", "OLE2"):
        extracted = engine.extract_signatures(container_doc, signature_type=kind)
        for by_puid in extracted.values():
            for sigs in by_puid.values():
                for sig in sigs:
                    sig["signature"] = re.compile(sig["signature"])
        containers[kind] = extracted

    _loads += 1
    return _Signatures(
        fido=engine,
        formats=formats,
        formats_by_first_byte=_index_by_first_byte(formats),
        by_puid={f.puid: f for f in formats},
        by_extension={ext: tuple(fmts) for ext, fmts in by_extension.items()},
        containers=containers,
        version=fido_pkg.__version__,
        release=(
            f"PRONOM v{versions.pronom_version} ({versions.pronom_signature}, "
            f"{container_file}, {versions.fido_extension_signature})"
        ),
    )


def _no_printing(*_: object, **__: object) -> None:
    raise AssertionError("fido tried to print a result; FidoEngine drives matching itself")


def load_signatures() -> None:
    """Read the signatures now (the forkserver's preload), not at the first file."""
    _signatures()


def _signatures() -> _Signatures:
    global _loaded
    with _lock:
        if _loaded is None:
            _loaded = _load()
        return _loaded


def _as_good_as_any(fmt: _Format, matches: list[tuple[_Format, str | None]]) -> bool:
    """fido's priority rule: drop a format if another candidate has priority over it."""
    puid = fmt.puid
    return not any(other is not fmt and puid in other.beats for other, _ in matches)


class FidoEngine:
    """fido's identification, with its signatures loaded once per process.

    Building several ``FidoEngine`` objects in one process is cheap: they share
    the module-level signature cache. The first one pays ~0.5 s to load.
    """

    name = "fido"

    def __init__(self) -> None:
        self._sigs = _signatures()

    @property
    def version(self) -> str:
        return self._sigs.version

    @property
    def signature_release(self) -> str:
        return self._sigs.release

    @property
    def signature_loads(self) -> int:
        """Signature loads in this process; the worker pool reports it per worker."""
        return signature_loads()

    def identify_batch(self, paths: Sequence[Path]) -> list[Identification]:
        return [self.identify(Path(p)) for p in paths]

    def identify(self, path: Path) -> Identification:
        """One file; an unreadable file is a failed result, not an exception."""
        started = time.perf_counter()
        try:
            return self._identify(Path(path), started)
        except OSError as err:
            return Identification.failed(
                Path(path),
                engine=self.name,
                engine_version=self.version,
                signature_release=self.signature_release,
                error=f"cannot read file: {err.strerror or err}",
                elapsed=time.perf_counter() - started,
            )

    def _identify(self, path: Path, started: float) -> Identification:
        # Mirrors fido.fido.Fido.identify_file (1.6.1), minus printing and re-parsing.
        size = os.stat(path).st_size
        with open(path, "rb") as stream:
            bof, eof = self._buffers(stream, size)
        matches = self._match_formats(bof, eof)
        container = next((f.container for f, _ in matches if f.container), None)
        if container in ("zip", "ole"):
            found = self._match_container("ZIP" if container == "zip" else "OLE2", path)
            if found:
                return self._result(path, found, "container", started)
        if matches and size > 0:
            if [f.puid for f, _ in matches] == [_ZIP]:
                siard = self._siard(path, started, zip_said=True)
                if siard is not None:
                    return siard
            return self._result(path, matches, "signature", started)
        if size > 0:
            siard = self._siard(path, started, zip_said=False)
            if siard is not None:
                return siard
        by_ext = self._match_extension(path.name)
        warning = "zero-byte file" if size == 0 else None
        return self._result(path, by_ext, "extension" if by_ext else "none", started, warning)

    def _siard(self, path: Path, started: float, *, zip_said: bool) -> Identification | None:
        """SIARD 2.1/2.2 by the zip's central directory, where fido's signatures say ZIP or nothing.

        Not fido's answer but ours (``containers.py`` says why fido cannot give
        it); the result's warning says so: ``container check: header/siardversion/2.2/``.
        A file no signature named is looked at only if it ends like a zip, or is
        called ``.siard``: one 22-byte read for every other unidentified file.
        """
        named = path.suffix.lower() == ".siard"
        if not (zip_said or named or has_zip_end(path)):
            return None
        match = siard_container(path)
        if match is None:
            if named and not zip_listing_found(path):
                return self._damaged_siard(path, started)
            return None
        fmt = self._sigs.by_puid.get(match.puid)
        if fmt is None:
            return None
        return self._result(path, [(fmt, fmt.name)], "container", started, match.note)

    def _damaged_siard(self, path: Path, started: float) -> Identification:
        """A ``.siard`` with no zip listing to read (cut off, damaged): SIARD by its name.

        Called a plain ZIP, or a 1.0 archive by fido's extension order, it would
        go unvalidated; named SIARD, newest version first, the SIARD validator
        gets it and says what is wrong with it (rule ``zip``).
        """
        newest = [SIARD_PUIDS[v] for v in ("2.2", "2.1", "2.0", "1.0")]
        found: list[tuple[_Format, str | None]] = [
            (self._sigs.by_puid[p], "External") for p in newest if p in self._sigs.by_puid
        ]
        return self._result(
            path, found, "extension", started, "container check: no zip listing to read"
        )

    def _buffers(self, stream: Any, size: int) -> tuple[bytes, bytes]:
        """fido's head and tail buffers; reads what is there instead of spinning on a short file."""
        bufsize: int = self._sigs.fido.bufsize
        bof = stream.read(min(size, bufsize))
        unread = size - len(bof)
        if unread <= 0:
            return bof, bof
        if unread < bufsize:
            return bof, bof[unread:] + stream.read(unread)
        stream.seek(size - bufsize)
        return bof, stream.read(bufsize)

    def _match_formats(self, bof: bytes, eof: bytes) -> list[tuple[_Format, str | None]]:
        result: list[tuple[_Format, str | None]] = []
        beaten: set[str] = set()  # PUIDs some candidate so far has priority over
        # Only the formats this first byte allows, in fido's order: a skipped one
        # could neither match nor beat another, so the pruning below is unchanged.
        candidates = self._sigs.formats_by_first_byte[bof[0]] if bof else self._sigs.formats
        for fmt in candidates:
            # fido's as_good_as_any(fmt, result); fmt is never in result yet here
            if fmt.puid in beaten:
                continue
            for sig_name, patterns in fmt.signatures:
                for position, regex in patterns:
                    if position == _BOF:
                        if regex.match(bof) is None:
                            break
                    elif regex.search(eof if position == _EOF else bof) is None:
                        break
                else:
                    result.append((fmt, sig_name))
                    beaten |= fmt.beats
        return [m for m in result if _as_good_as_any(m[0], result)]

    def _match_container(self, kind: str, path: Path) -> list[tuple[_Format, str | None]]:
        from fido.package import OlePackage, ZipPackage  # type: ignore[import-untyped]

        package = ZipPackage if kind == "ZIP" else OlePackage
        puids = package(str(path), self._sigs.containers[kind]).detect_formats()
        seen: dict[str, None] = dict.fromkeys(puids)  # fido repeats a PUID per signature hit
        return [
            (self._sigs.by_puid[p], self._sigs.by_puid[p].name)
            for p in seen
            if p in self._sigs.by_puid
        ]

    def _match_extension(self, name: str) -> list[tuple[_Format, str | None]]:
        ext = os.path.splitext(name)[1].lower().lstrip(".")
        found: list[tuple[_Format, str | None]] = [
            (f, "External") for f in self._sigs.by_extension.get(ext, ()) if ext
        ]
        return [m for m in found if _as_good_as_any(m[0], found)]

    def _result(
        self,
        path: Path,
        matches: list[tuple[_Format, str | None]],
        basis: Basis,
        started: float,
        warning: str | None = None,
    ) -> Identification:
        warnings = [warning] if warning else []
        if basis == "extension":
            warnings.append("match on extension only")
        if len(matches) > 1:
            puids = ", ".join(f.puid for f, _ in matches)
            warnings.append(f"{len(matches)} candidate formats: {puids}")
        first = matches[0][0] if matches else None
        return Identification(
            path=path,
            puids=tuple(f.puid for f, _ in matches),
            format_name=first.name if first else None,
            format_version=first.version if first else None,
            mime=first.mime if first else None,
            basis=basis,
            engine=self.name,
            engine_version=self.version,
            signature_release=self.signature_release,
            warning="; ".join(warnings) or None,
            elapsed=time.perf_counter() - started,
        )
