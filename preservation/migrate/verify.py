"""Whether a migration's output may replace its source: every check, and what each proved.

A migration is accepted only when every check passes, and each check becomes
one line of the PREMIS event's outcome detail (``Verification.summary``), so a
reader decades from now sees what was compared and both values, not a bare
"success". Nothing here raises for a bad file: a file that cannot be decoded
is a failed check with the error as its detail.

What runs once per batch, and why: fido (``identify``, the caller's), the
registry's validators (``validate_files``, which splits its work over threads
and runs mediaconch once per batch) and the characterisation tools
(``characterise``, one ExifTool or MediaInfo process for sources and outputs
together). Starting a process per file would cost more than the checks. They
run at the same time: identification on the calling thread (a process pool may
want the main thread), validation and characterisation on two others. What
compares one source with its output (decoded pixels, PCM, frame MD5s, pages)
then runs per candidate on a pool of ``workers`` threads; Pillow, FFmpeg and
ffmpeg the program release the GIL or are other processes.

Choices a reader would otherwise have to rediscover:

* **Values.** Width, height, sample rate, channels, frame size and frame rate
  are the characterisation's (what the catalogue will record), with what the
  decoder sees filling a gap. Duration is measured by decoding, as samples
  over rate: MediaInfo gives 1.044 s for an MP3 of 1.000 s (it counts the
  encoder's delay and padding frames), FFmpeg's gapless decoding gives 44,100
  samples, as does the WAV made from it.
* **Duration tolerance** is one codec frame: the larger ``frame_size`` of the
  two streams (MP3 1,152 samples, AAC 1,024), at least one sample. A tool
  whose decoder keeps what FFmpeg trims (LAME's 1,105 samples of delay and
  padding) stays within it; more than a frame is audio lost or invented.
  PCM and FLAC declare no fixed frame size, so they must agree to the sample.
* **Pixels** of two single-frame pictures that decode to the same mode
  (the usual JPEG and its RGB TIFF) are compared as decoded. Otherwise they
  are compared in a form that loses nothing and does not depend on
  how the output stores them: every 8-bit mode (bilevel, grey, palette, RGB,
  with or without alpha) becomes RGBA, so a palette GIF and the RGB TIFF made
  from it compare equal, and a lost transparency does not. 16-bit grey stays
  ``I;16`` (big-endian variants go through ``I``: Pillow's direct ``I;16B`` to
  ``I;16`` conversion clips); CMYK, LAB, YCbCr, I and F are compared as
  decoded. Both sides are turned upright first (their EXIF orientation
  applied), because the tool stores a photo taken on its side upright, as
  every viewer shows it; width and height are the upright picture's.
  Channels are counted before that widening (a palette is 3, or 4 with
  transparency).
* **Bit depth** is compared because Pillow decodes 16-bit-per-sample RGB as
  8-bit: a 48-bit scan made into a 24-bit TIFF would pass the pixel check.
  More bits in the output is not a loss (4-bit grey stored as 8-bit); a
  palette's bits per index are not comparable with bits per sample.
* **PCM** is compared for lossless sources only (decided by codec name), per
  audio stream, as the sha256 of interleaved samples in the source's decoded
  sample format; an output decoded to another format (FLAC gives ``s16`` for
  8-bit WAV's ``u8``) is converted with ``av.AudioResampler``, format only:
  integer widening and narrowing are exact there. Channel layouts are not
  converted (a WAV without a channel mask decodes as "2 channels", its FLAC
  as "stereo"; converting would remix), only the counts compared.
* **Frame MD5s** come from ``ffmpeg -f framemd5`` for lossless sources, with
  the output converted to the source's pixel format: FFV1 has no ``bgr24``
  and stores such video as ``bgr0``, so the raw MD5s differ although every
  pixel is kept. Timestamps are ignored (time bases differ between AVI and
  Matroska); the MD5 column is compared frame by frame. A lossy source's
  decoded frames may depend on the decoder (MPEG-2 and MPEG-4 Part 2 leave
  the IDCT's rounding to it), so they are not compared; frame count, size
  and rate are. The audio of a video is compared as PCM when it is lossless.
* **Frame count** is the number of video packets, demuxed without decoding:
  one packet holds one frame in the containers migrated here, and a film is
  then read once for its count, not decoded.
* **Pages** come from pikepdf for a PDF and from the package itself for
  OpenDocument (meta.xml) and Office Open XML (docProps/app.xml), since
  ExifTool reads the latter only with Perl's Archive::Zip; otherwise from
  the characterisation. For documents, "properties" means the page count.
* A step that could not be carried out (a validator missing, a value no tool
  knows) fails: an archive must not read "mediaconch is not installed" as
  "MediaConch accepts this film". The one exception is a property of the
  source nobody knows (page count, bit depth): nothing is lost that was known.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from preservation.characterise.ffprobe import DEMUXERS, open_media
from preservation.characterise.registry import Registry
from preservation.characterise.run import FileToCharacterise, characterise
from preservation.characterise.tools import ToolBox
from preservation.characterise.validation import (
    MAX_PIXELS,
    Finding,
    FormatValidator,
    validate_files,
)
from preservation.identify.interfaces import Identification

__all__ = [
    "CHECK_NAMES",
    "STEPS",
    "Candidate",
    "Check",
    "Verification",
    "verify",
]

#: What a policy's ``verification`` may ask for ("output" is always done).
STEPS: tuple[str, ...] = (
    "output",
    "identify",
    "validate",
    "properties",
    "pixels",
    "pcm",
    "framemd5",
    "pages",
)

#: Every check name used; validators add ``"validation (<validator>)"``.
CHECK_NAMES: tuple[str, ...] = (
    "tool exit",
    "output",
    "identification",
    "validation",
    "width",
    "height",
    "channels",
    "bit depth",
    "duration",
    "sample rate",
    "streams",
    "frame count",
    "frame size",
    "frame rate",
    "decoded pixels",
    "decoded PCM",
    "frame MD5s",
    "page count",
)

_APPLIES: Mapping[str, frozenset[str]] = {
    "image": frozenset({"properties", "pixels"}),
    "audio": frozenset({"properties", "pcm"}),
    "video": frozenset({"properties", "pcm", "framemd5"}),
    "document": frozenset({"properties", "pages"}),
}
_STEP_CHECK = {"pixels": "decoded pixels", "pcm": "decoded PCM", "framemd5": "frame MD5s"}
_STEP_CHECK |= {"pages": "page count", "properties": "properties"}

_LOSSLESS_AUDIO = frozenset(
    "flac alac wavpack ape tta mlp truehd shorten tak mp4als wmalossless ralf s302m".split()
)
"""Lossless audio codecs besides ``pcm_*``, by FFmpeg's codec name."""

_LOSSLESS_VIDEO = frozenset(
    "ffv1 rawvideo huffyuv ffvhuff utvideo magicyuv png qtrle v210 v308 v408 v410 r210 r10k "
    "y41p yuv4 ayuv zlib lagarith tiff bmp targa sgi dpx".split()
)
"""Lossless video codecs: their decoded frames are the stored ones on any build. Lossless
H.264 (profile High 4:4:4 at qp 0) is not told apart from lossy H.264 here."""

_IMAGE_FORMATS = ("BMP", "DIB", "GIF", "JPEG", "JPEG2000", "PNG", "TIFF", "WEBP", "PPM", "TGA")
"""Pillow plugins an image may be opened with: raster formats decoded in process
(no EPS, whose plugin runs Ghostscript on the file)."""

_WIDENED = frozenset({"1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX"})
_GREY16 = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
_BAND_PIXELS = 1 << 22  # pixels hashed per slice of a frame: bounded memory for a huge scan
_PACKAGE_XML_LIMIT = 16 << 20
_ODF_META = "urn:oasis:names:tc:opendocument:xmlns:meta:1.0"
_OOXML_APP = "http://schemas.openxmlformats.org/officeDocument/2006/extended-properties"
_STDERR_LIMIT = 300


# -- the records ----------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One thing verified: its name, whether it held, and what was compared."""

    name: str
    passed: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "detail": self.detail}

    def line(self) -> str:
        """The check as one line of an outcome note: ``PASS width: source 640, output 640``."""
        return f"{'PASS' if self.passed else 'FAIL'} {self.name}: {self.detail}"


@dataclass(frozen=True)
class Candidate:
    """One output to verify, with what the action promised and how its tool ended."""

    key: Any
    source: Path
    source_puid: str | None
    output: Path
    kind: str
    target_puid: str
    verification: tuple[str, ...]
    exit_code: int
    tool_error: str | None


@dataclass
class Verification:
    """What verifying one candidate found.

    ``identification``, ``properties`` and ``validation`` describe the output,
    for the catalogue, whether or not a check was asked of them.
    """

    key: Any
    checks: list[Check] = field(default_factory=list)
    identification: Identification | None = None
    properties: dict[str, Any] = field(default_factory=dict)
    source_properties: dict[str, Any] = field(default_factory=dict)
    validation: list[Finding] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Every check passed, and the two that always run are among them."""
        names = {check.name for check in self.checks}
        return {"tool exit", "output"} <= names and all(c.passed for c in self.checks)

    def summary(self) -> str:
        """The PREMIS ``eventOutcomeDetailNote``: one line per check, in order."""
        return "\n".join(check.line() for check in self.checks)


# -- the batch --------------------------------------------------------------------


@dataclass
class _Batch:
    """What the batch steps found, by position in the list of live candidates."""

    identifications: list[Identification | None]
    identify_error: str | None = None
    findings: dict[Path, list[Finding]] = field(default_factory=dict)
    validate_error: str | None = None
    source_properties: list[dict[str, Any]] = field(default_factory=list)
    output_properties: list[dict[str, Any]] = field(default_factory=list)
    source_tool_errors: list[list[str]] = field(default_factory=list)
    output_tool_errors: list[list[str]] = field(default_factory=list)
    characterise_error: str | None = None


def verify(
    candidates: Sequence[Candidate],
    *,
    registry: Registry,
    toolbox: ToolBox,
    identify: Callable[[Sequence[Path]], Sequence[Identification]],
    work_dir: Path,
    workers: int = 2,
    validate_workers: int | None = None,
    validators: Mapping[str, FormatValidator] | None = None,
) -> dict[Any, Verification]:
    """Verify every candidate; one ``Verification`` per key (keys must be unique).

    ``identify`` is the archive's identification (fido) of a list of paths;
    characterisation documents go to a new folder in ``work_dir``;
    ``validators`` replaces the registry's validator instances (as in
    ``validate_files``).
    """
    keys = [candidate.key for candidate in candidates]
    if len(set(keys)) != len(keys):
        raise ValueError("candidate keys must be unique")
    results: dict[Any, Verification] = {}
    live: list[Candidate] = []
    for candidate in candidates:
        started = time.monotonic()
        checks = [_tool_exit(candidate), _output(candidate)]
        results[candidate.key] = Verification(candidate.key, checks)
        if all(check.passed for check in checks):
            live.append(candidate)
        results[candidate.key].seconds = time.monotonic() - started
    if not live:
        return results

    started = time.monotonic()
    batch = _run_batch(
        live,
        registry=registry,
        toolbox=toolbox,
        identify=identify,
        work_dir=work_dir,
        workers=validate_workers or workers,
        validators=validators,
    )
    share = (time.monotonic() - started) / len(live)

    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="verify") as pool:
        futures: list[Future[tuple[list[Check], float]]] = [
            pool.submit(_timed_checks, candidate, index, batch, registry)
            for index, candidate in enumerate(live)
        ]
        for index, (candidate, future) in enumerate(zip(live, futures, strict=True)):
            checks, seconds = future.result()
            result = results[candidate.key]
            result.checks += checks
            result.identification = batch.identifications[index]
            result.properties = batch.output_properties[index]
            result.source_properties = batch.source_properties[index]
            result.validation = list(batch.findings.get(candidate.output, []))
            result.seconds += share + seconds
    return results


def _tool_exit(candidate: Candidate) -> Check:
    if candidate.exit_code == 0 and candidate.tool_error is None:
        return Check("tool exit", True, "exit code 0")
    detail = f"exit code {candidate.exit_code}"
    if candidate.tool_error:
        detail += f": {_short(candidate.tool_error)}"
    return Check("tool exit", False, detail)


def _output(candidate: Candidate) -> Check:
    try:
        size = candidate.output.stat().st_size
    except OSError as err:
        return Check("output", False, f"no output file ({err.strerror or err})")
    if not candidate.output.is_file():
        return Check("output", False, "the output is not a regular file")
    if size == 0:
        return Check("output", False, "the output is empty (0 bytes)")
    return Check("output", True, f"{candidate.output.name}, {size} bytes")


def _run_batch(
    live: Sequence[Candidate],
    *,
    registry: Registry,
    toolbox: ToolBox,
    identify: Callable[[Sequence[Path]], Sequence[Identification]],
    work_dir: Path,
    workers: int,
    validators: Mapping[str, FormatValidator] | None,
) -> _Batch:
    """Identification here, validation and characterisation beside it, each once."""
    batch = _Batch(
        identifications=[None] * len(live),
        source_properties=[{} for _ in live],
        output_properties=[{} for _ in live],
        source_tool_errors=[[] for _ in live],
        output_tool_errors=[[] for _ in live],
    )
    by_validator: dict[str, list[Path]] = {}
    for candidate in live:
        entry = registry.entry_for(candidate.target_puid)
        if "validate" in candidate.verification and entry is not None:
            for name in entry.validate:
                by_validator.setdefault(name, []).append(candidate.output)

    def run_validation() -> None:
        if not by_validator:
            return
        try:
            batch.findings = validate_files(by_validator, workers=workers, validators=validators)
        except Exception as err:  # noqa: BLE001 - becomes every validation check's detail
            batch.validate_error = _error_text(err)

    def run_characterisation() -> None:
        files: list[FileToCharacterise] = []
        for index, candidate in enumerate(live):
            files.append(
                FileToCharacterise(("source", index), candidate.source, candidate.source_puid)
            )
            files.append(
                FileToCharacterise(("output", index), candidate.output, candidate.target_puid)
            )
        try:
            work_dir.mkdir(parents=True, exist_ok=True)
            out_dir = Path(tempfile.mkdtemp(prefix="characterisation-", dir=work_dir))
            found = characterise(files, registry=registry, out_dir=out_dir, tools=toolbox)
        except Exception as err:  # noqa: BLE001 - the property checks say so
            batch.characterise_error = _error_text(err)
            return
        for side, properties, errors in (
            ("source", batch.source_properties, batch.source_tool_errors),
            ("output", batch.output_properties, batch.output_tool_errors),
        ):
            properties[:] = [dict(found.properties.get((side, i), {})) for i in range(len(live))]
            errors[:] = [list(found.tool_errors.get((side, i), [])) for i in range(len(live))]

    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="verify-batch") as pool:
        background = [pool.submit(run_validation), pool.submit(run_characterisation)]
        try:
            answers = list(identify([candidate.output for candidate in live]))
            if len(answers) != len(live):
                raise ValueError(f"{len(answers)} identifications for {len(live)} outputs")
            batch.identifications = list(answers)
        except Exception as err:  # noqa: BLE001 - every identification check says so
            batch.identify_error = _error_text(err)
        for future in background:
            future.result()
    return batch


# -- one candidate ------------------------------------------------------------------


def _timed_checks(
    candidate: Candidate, index: int, batch: _Batch, registry: Registry
) -> tuple[list[Check], float]:
    started = time.monotonic()
    try:
        checks = _checks(candidate, index, batch, registry)
    except Exception as err:  # noqa: BLE001 - a bug here must not lose the other candidates
        checks = [Check("verification", False, f"verification failed: {_error_text(err)}")]
    return checks, time.monotonic() - started


def _checks(candidate: Candidate, index: int, batch: _Batch, registry: Registry) -> list[Check]:
    steps = candidate.verification
    checks: list[Check] = []
    if "identify" in steps:
        checks.append(
            _identification(candidate, batch.identifications[index], batch.identify_error)
        )
    if "validate" in steps:
        checks += _validation(candidate, batch, registry)
    applies = _APPLIES.get(candidate.kind)
    if applies is None:
        checks.append(Check("kind", False, f"unknown kind of migration {candidate.kind!r}"))
        return checks
    for step in steps:
        if step not in STEPS:
            checks.append(Check(step, False, f"unknown verification step {step!r}"))
        elif step not in applies and step not in ("output", "identify", "validate"):
            name = _STEP_CHECK[step]
            checks.append(Check(name, False, f"{step!r} does not apply to {candidate.kind}"))
    sides = _Sides(
        batch.source_properties[index],
        batch.output_properties[index],
        batch.source_tool_errors[index],
        batch.output_tool_errors[index],
        batch.characterise_error,
    )
    wanted = set(steps) & applies
    if not wanted:
        return checks
    if candidate.kind == "image":
        checks += _image_checks(candidate, wanted, sides)
    elif candidate.kind == "audio":
        checks += _audio_checks(candidate, wanted, sides)
    elif candidate.kind == "video":
        checks += _video_checks(candidate, wanted, sides)
    else:
        checks.append(_page_check(candidate, sides))
    return checks


def _identification(candidate: Candidate, found: Identification | None, error: str | None) -> Check:
    expected = candidate.target_puid
    if found is None:
        return Check("identification", False, f"not identified ({error}), expected {expected}")
    engine = f"{found.engine} {found.engine_version}".strip()
    if found.error:
        return Check("identification", False, f"{engine}: {found.error}; expected {expected}")
    if found.puid is None:
        return Check("identification", False, f"{engine}: no format found, expected {expected}")
    name = f" ({found.format_name})" if found.format_name else ""
    detail = f"{engine}: {found.puid}{name}, expected {expected}"
    return Check("identification", found.puid == expected, detail)


def _validation(candidate: Candidate, batch: _Batch, registry: Registry) -> list[Check]:
    entry = registry.entry_for(candidate.target_puid)
    if entry is None or not entry.validate:
        return [
            Check("validation", False, f"no validator is registered for {candidate.target_puid}")
        ]
    if batch.validate_error is not None:
        return [Check("validation", False, f"validation failed: {batch.validate_error}")]
    findings = {finding.tool: finding for finding in batch.findings.get(candidate.output, [])}
    checks = []
    for name in entry.validate:
        finding = findings.get(name)
        label = f"validation ({name})"
        if finding is None:
            checks.append(Check(label, False, f"{name} gave no finding"))
        elif finding.valid is None:
            checks.append(
                Check(label, False, f"not checked: {finding.message or 'no reason given'}")
            )
        elif finding.valid:
            checks.append(Check(label, True, f"valid ({finding.tool_version})"))
        else:
            checks.append(
                Check(label, False, f"invalid ({finding.tool_version}): {finding.message}")
            )
    return checks


@dataclass(frozen=True)
class _Sides:
    """The characterisation of a source and its output, and why a value may be missing."""

    source: dict[str, Any]
    output: dict[str, Any]
    source_errors: list[str]
    output_errors: list[str]
    error: str | None

    def why(self, side: str) -> str:
        errors = self.source_errors if side == "source" else self.output_errors
        reasons = ([self.error] if self.error else []) + errors
        return f" ({'; '.join(reasons)})" if reasons else ""


def _pick(properties: Mapping[str, Any], key: str, measured: Any) -> Any:
    value = properties.get(key)
    return measured if value is None else value


def _same(
    name: str, source: Any, output: Any, sides: _Sides, *, unit: str = "", what: str = ""
) -> Check:
    """Equal values pass; a value nobody could measure fails, with the tools' reasons."""
    prefix = f"{what}: " if what else ""
    if source is None:
        return Check(name, False, f"{prefix}source {name} unknown{sides.why('source')}")
    if output is None:
        return Check(name, False, f"{prefix}output {name} unknown{sides.why('output')}")
    detail = f"{prefix}source {source}{unit}, output {output}{unit}"
    return Check(name, source == output, detail)


def _failed(names: Sequence[str], side: str, path: Path, err: BaseException) -> list[Check]:
    """Every check that needed a file the decoder refused; its path is left out of the detail
    (a staging path means nothing in an AIP), its name kept."""
    text = _error_text(err, path)
    return [Check(name, False, f"cannot decode the {side}: {text}") for name in names]


# -- images -----------------------------------------------------------------------


@dataclass(frozen=True)
class _ImageFacts:
    width: int
    height: int
    channels: int
    frames: list[tuple[str, str]]  # (compared mode, sha256) per frame; empty unless hashed


_pillow_lock = threading.Lock()


def _pillow() -> Any:
    """Pillow, with the archive's limits (as ``validation`` sets them)."""
    from PIL import Image, ImageFile

    with _pillow_lock:
        if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < MAX_PIXELS:
            Image.MAX_IMAGE_PIXELS = MAX_PIXELS
        ImageFile.LOAD_TRUNCATED_IMAGES = False
    return Image


def _channels(image: Any) -> int:
    """Channels as stored, a palette counting as its colours: RGB, or RGBA with transparency."""
    if image.mode == "P":
        palette = getattr(image, "palette", None)
        alpha = "transparency" in image.info or getattr(palette, "mode", "RGB") == "RGBA"
        return 4 if alpha else 3
    if image.mode == "PA":
        return 4
    if image.mode == "RGBX":
        return 3
    if image.mode in ("L", "RGB") and "transparency" in image.info:
        return len(image.getbands()) + 1  # a transparent colour is an alpha channel, seen so
    return len(image.getbands())


def _comparable(frame: Any) -> Any:
    """The frame in the form compared (see the module's docstring)."""
    if frame.mode in _WIDENED:
        if frame.mode == "RGBX":
            frame = frame.convert("RGB")
        return frame if frame.mode == "RGBA" else frame.convert("RGBA")
    if frame.mode in _GREY16 and frame.mode != "I;16":
        return frame.convert("I").convert("I;16")
    return frame


def _frame_digest(frame: Any) -> str:
    """sha256 of ``frame.tobytes()``, taken in slices of rows so a huge scan is not copied whole."""
    width, height = frame.size
    if width * height <= _WHOLE_PIXELS:  # one copy, not one per slice
        return hashlib.sha256(frame.tobytes()).hexdigest()
    digest = hashlib.sha256()
    rows = max(1, _BAND_PIXELS // max(1, width))
    for top in range(0, height, rows):
        digest.update(frame.crop((0, top, width, min(height, top + rows))).tobytes())
    return digest.hexdigest()


def _upright(image: Any) -> Any:
    """The frame as it is meant to be seen: its EXIF orientation applied, as the tool does.

    The migration stores pixels upright (a TIFF viewer that ignores the
    orientation tag then shows the picture right); so the source is compared
    turned the same way, and its width and height are those of the upright picture.
    """
    from PIL import ImageOps

    if image.getexif().get(0x0112, 1) in (1, None):
        return image  # nothing to turn: no copy of a large scan
    return ImageOps.exif_transpose(image)


#: Modes compared as decoded when both sides decode to them (no palette, no padding).
_AS_DECODED = frozenset({"1", "L", "LA", "RGB", "RGBA", "CMYK", "I;16", "I", "F"})
#: Up to this many pixels a frame is hashed in one piece (at most 256 MiB as RGBA).
_WHOLE_PIXELS = 1 << 26


def _stored_mode(path: Path) -> tuple[str, int, bool]:
    """The mode, frame count and any transparency the header gives, without decoding a pixel."""
    with _pillow().open(path, formats=_IMAGE_FORMATS) as image:
        return str(image.mode), int(getattr(image, "n_frames", 1)), "transparency" in image.info


def _image_facts(path: Path, *, hash_pixels: bool, widen: bool = True) -> _ImageFacts:
    image_module = _pillow()
    with image_module.open(path, formats=_IMAGE_FORMATS) as image:
        channels = _channels(image)
        count = int(getattr(image, "n_frames", 1))
        frames: list[tuple[str, str]] = []
        if image.size[0] * image.size[1] > MAX_PIXELS:
            raise ValueError(f"the image is above {MAX_PIXELS} pixels")
        image.load()
        width, height = _upright(image).size
        if hash_pixels:
            for index in range(count):
                if index:
                    image.seek(index)
                if image.size[0] * image.size[1] > MAX_PIXELS:
                    raise ValueError(f"frame {index + 1} is above {MAX_PIXELS} pixels")
                image.load()
                comparable = _comparable(_upright(image)) if widen else _upright(image)
                frames.append((comparable.mode, _frame_digest(comparable)))
    return _ImageFacts(width, height, channels, frames)


def _image_checks(candidate: Candidate, wanted: set[str], sides: _Sides) -> list[Check]:
    names = []
    if "properties" in wanted:
        names += ["width", "height", "channels", "bit depth"]
    if "pixels" in wanted:
        names.append("decoded pixels")
    # Two single-frame pictures decoding to the same mode compare as decoded: widening
    # both to RGBA would only cost two copies of each. Otherwise both are widened.
    try:
        widen = True
        source_mode = _stored_mode(candidate.source)
        output_mode = _stored_mode(candidate.output)
        mode, frames, transparency = source_mode
        # Only plain pictures take the short way: a transparent colour (PNG's tRNS) or
        # a palette is seen only once widened, and RGBX's padding byte is no pixel.
        widen = source_mode != output_mode or frames != 1 or transparency or mode not in _AS_DECODED
    except Exception:  # noqa: BLE001, S110 - the decode below says what is wrong
        pass
    try:
        source = _image_facts(candidate.source, hash_pixels="pixels" in wanted, widen=widen)
    except Exception as err:  # noqa: BLE001 - every decoder failure is a failed check
        return _failed(names, "source", candidate.source, err)
    try:
        output = _image_facts(candidate.output, hash_pixels="pixels" in wanted, widen=widen)
    except Exception as err:  # noqa: BLE001
        return _failed(names, "output", candidate.output, err)
    checks = []
    if "properties" in wanted:
        for key in ("width", "height"):
            # As decoded and turned upright: characterisation gives the stored size, which
            # for a photo taken on its side is the other way round.
            checks.append(_same(key, getattr(source, key), getattr(output, key), sides, unit=" px"))
        checks.append(_same("channels", source.channels, output.channels, sides))
        checks.append(_bit_depth(sides))
    if "pixels" in wanted:
        checks.append(_pixels(source, output))
    return checks


def _bit_depth(sides: _Sides) -> Check:
    source, output = sides.source.get("bit_depth"), sides.output.get("bit_depth")
    if sides.source.get("colour_space") == "Palette":
        shown = "unknown" if output is None else f"{output} bits per sample"
        detail = (
            f"source palette of {source or '?'}-bit indices, output {shown}: not comparable; "
            "the palette's colours are compared as decoded pixels"
        )
        return Check("bit depth", True, detail)
    if source is None:
        # a format that does not say (16-bit BMP) is not a loss; a tool that failed is unchecked
        why = sides.why("source")
        return Check("bit depth", not why, f"source bit depth unknown{why}")
    if output is None:
        return Check("bit depth", False, f"output bit depth unknown{sides.why('output')}")
    detail = f"source {source}, output {output} bits per sample"
    if output > source:
        detail += " (widened, nothing lost)"
    return Check("bit depth", output >= source, detail)


def _pixels(source: _ImageFacts, output: _ImageFacts) -> Check:
    name = "decoded pixels"
    if len(source.frames) != len(output.frames):
        return Check(
            name, False, f"source {len(source.frames)} frames, output {len(output.frames)}"
        )
    for number, ((s_mode, s_hash), (o_mode, o_hash)) in enumerate(
        zip(source.frames, output.frames, strict=True), 1
    ):
        where = f"frame {number}: " if len(source.frames) > 1 else ""
        if s_mode != o_mode:
            detail = f"{where}source decodes to {s_mode}, output to {o_mode}"
            return Check(name, False, detail)
        if s_hash != o_hash:
            detail = f"{where}sha256 of decoded {s_mode} pixels: {s_hash} ≠ {o_hash}"
            return Check(name, False, detail)
    modes = "/".join(dict.fromkeys(mode for mode, _ in source.frames))
    if len(source.frames) == 1:
        digest = source.frames[0][1]
        return Check(name, True, f"sha256 of decoded {modes} pixels: {digest} = {digest}")
    combined = hashlib.sha256("".join(h for _, h in source.frames).encode()).hexdigest()
    detail = (
        f"{len(source.frames)} frames, each equal; sha256 of the frames' sha256s of decoded "
        f"{modes} pixels: {combined} = {combined}"
    )
    return Check(name, True, detail)


# -- audio and video: one demuxing pass per file ---------------------------------------


@dataclass
class _AudioStream:
    codec: str
    lossless: bool
    rate: int
    channels: int
    frame_size: int
    decoded_format: str | None = None  # what the decoder gives, e.g. s16, s32, fltp
    hashed_as: str | None = None  # the packed format the digest is of
    samples: int = 0
    digest: str | None = None
    error: str | None = None


@dataclass
class _Media:
    video_codec: str | None = None
    width: int | None = None
    height: int | None = None
    rate: Fraction | None = None
    pix_fmt: str | None = None
    video_streams: int = 0
    video_packets: int = 0
    demux_error: str | None = None
    audio: list[_AudioStream] = field(default_factory=list)


def _av() -> Any:
    import av

    return av


def _codec_name(context: Any) -> str:
    codec = context.codec
    return str(getattr(codec, "canonical_name", None) or context.name)


def _is_picture(stream: Any, av: Any) -> bool:
    """An attached picture (cover art) is a video stream that is not video."""
    flags = getattr(getattr(av.stream, "Disposition", None), "attached_pic", 0)
    return bool(getattr(stream, "disposition", 0) & flags)


def _audio_lossless(codec: str) -> bool:
    return codec.startswith("pcm_") or codec in _LOSSLESS_AUDIO


def _media(
    path: Path,
    *,
    count_frames: bool = False,
    decode: Sequence[int] | str = (),
    hash_lossless: bool = False,
    hash_as: Mapping[int, str] | None = None,
) -> _Media:
    """Streams of ``path``, in one demuxing pass: video packets counted, audio decoded.

    ``decode`` names the audio streams decoded (by position among the audio
    streams), or is ``"all"`` or ``"lossless"``. A decoded stream is hashed in
    ``hash_as[i]`` (a packed sample format) when given, or in its own decoded
    format made packed when ``hash_lossless`` and its codec is lossless;
    otherwise only its samples are counted.
    """
    av = _av()
    found = _Media()
    with open_media(av, path) as container:
        videos = [s for s in container.streams.video if not _is_picture(s, av)]
        found.video_streams = len(videos)
        if videos:
            context = videos[0].codec_context
            found.video_codec = _codec_name(context)
            found.width, found.height = context.width or None, context.height or None
            found.pix_fmt = context.pix_fmt
            rate = videos[0].average_rate or videos[0].base_rate
            found.rate = Fraction(rate) if rate else None
        audios = list(container.streams.audio)
        for stream in audios:
            context = stream.codec_context
            codec = _codec_name(context)
            channels = context.channels or len(context.layout.channels)
            found.audio.append(
                _AudioStream(
                    codec,
                    _audio_lossless(codec),
                    int(context.sample_rate or 0),
                    int(channels),
                    int(context.frame_size or 0),
                )
            )
        if decode == "all":
            chosen: Sequence[int] = range(len(audios))
        elif decode == "lossless":
            chosen = [i for i, stream in enumerate(found.audio) if stream.lossless]
        else:
            chosen = [i for i in decode if isinstance(i, int) and i < len(audios)]
        hashers: dict[int, _PcmHasher] = {}
        for index in chosen:
            target = (hash_as or {}).get(index)
            if target is not None or (hash_lossless and found.audio[index].lossless):
                hashers[index] = _PcmHasher(target)
            else:
                hashers[index] = _PcmHasher(None, hashing=False)
        streams = ([videos[0]] if count_frames and videos else []) + [
            audios[i] for i in sorted(hashers)
        ]
        if streams:
            _demux(
                av, container, streams, found, hashers, {s.index: i for i, s in enumerate(audios)}
            )
        for index, hasher in hashers.items():
            stream_facts = found.audio[index]
            stream_facts.samples = hasher.samples
            stream_facts.decoded_format = hasher.decoded_format
            stream_facts.error = hasher.error()
            if hasher.hashing:
                stream_facts.hashed_as = hasher.target
                stream_facts.digest = hasher.digest.hexdigest()
    return found


def _demux(
    av: Any,
    container: Any,
    streams: Sequence[Any],
    found: _Media,
    hashers: Mapping[int, _PcmHasher],
    position: Mapping[int, int],
) -> None:
    """Read the file once: count video packets, feed audio to its hasher.

    A packet that fails to decode is counted against its stream and the rest
    is still read, so a damaged output fails its PCM and duration checks while
    its header facts (rate, channels) are still compared.
    """
    try:
        for packet in container.demux(*streams):
            if packet.stream.type == "video":
                if packet.size:
                    found.video_packets += 1
                continue
            hasher = hashers[position[packet.stream.index]]
            try:
                frames = packet.decode()
            except av.FFmpegError as err:
                hasher.failed(err)
                continue
            for frame in frames:
                hasher.add(frame)
        for hasher in hashers.values():
            hasher.finish()
    except av.FFmpegError as err:
        found.demux_error = f"reading stopped: {_av_error(err)}"
        for hasher in hashers.values():
            hasher.failed(err)


def _av_error(err: Any) -> str:
    """FFmpeg's message without the path PyAV appends to it."""
    return f"{type(err).__name__}: {getattr(err, 'strerror', None) or err}"


class _PcmHasher:
    """Counts an audio stream's decoded samples and hashes them interleaved, in one format."""

    def __init__(self, target: str | None, *, hashing: bool = True) -> None:
        self.target = target
        self.hashing = hashing
        self.samples = 0
        self.failures = 0
        self.first_failure = ""
        self.decoded_format: str | None = None
        self.digest = hashlib.sha256()
        self._resampler: Any = None

    def add(self, frame: Any) -> None:
        if self.decoded_format is None:
            self.decoded_format = frame.format.name
            if self.target is None:
                self.target = frame.format.packed.name
        if not self.hashing:
            self.samples += frame.samples
            return
        if frame.format.name == self.target:
            self._take(frame)
            return
        if self._resampler is None:
            # format only: the rate and layout stay the frame's, so nothing is resampled or remixed
            self._resampler = _av().AudioResampler(format=self.target)
        for converted in self._resampler.resample(frame):
            self._take(converted)

    def failed(self, err: Exception) -> None:
        self.failures += 1
        if self.failures == 1:
            self.first_failure = _av_error(err)

    def error(self) -> str | None:
        if not self.failures:
            return None
        more = f" ({self.failures} packets failed)" if self.failures > 1 else ""
        return f"decoding failed: {self.first_failure}{more}"

    def finish(self) -> None:
        if self._resampler is not None:
            for converted in self._resampler.resample(None):
                self._take(converted)

    def _take(self, frame: Any) -> None:
        self.samples += frame.samples
        size = frame.samples * len(frame.layout.channels) * frame.format.bytes
        self.digest.update(memoryview(frame.planes[0])[:size])


# -- audio --------------------------------------------------------------------------------


def _audio_checks(candidate: Candidate, wanted: set[str], sides: _Sides) -> list[Check]:
    names = []
    if "properties" in wanted:
        names += ["streams", "duration", "sample rate", "channels"]
    if "pcm" in wanted:
        names.append("decoded PCM")
    decode: Sequence[int] | str = "all" if "pcm" in wanted else (0,)
    try:
        source = _media(candidate.source, decode=decode, hash_lossless="pcm" in wanted)
    except Exception as err:  # noqa: BLE001
        return _failed(names, "source", candidate.source, err)
    hash_as = {i: s.hashed_as for i, s in enumerate(source.audio) if s.hashed_as}
    try:
        output = _media(candidate.output, decode=decode, hash_as=hash_as)
    except Exception as err:  # noqa: BLE001
        return _failed(names, "output", candidate.output, err)
    if not source.audio:
        return [Check(name, False, "the source has no audio stream") for name in names]
    if not output.audio:
        return [Check(name, False, "the output has no audio stream") for name in names]
    checks = []
    if "properties" in wanted:
        checks.append(
            _same("streams", len(source.audio), len(output.audio), sides, what="audio streams")
        )
        checks.append(_duration(source.audio[0], output.audio[0]))
        checks += _audio_properties(source.audio[0], output.audio[0], sides)
    if "pcm" in wanted:
        checks.append(_pcm(source.audio, output.audio, "duration, rate and channels"))
    return checks


def _audio_properties(
    source: _AudioStream, output: _AudioStream, sides: _Sides, what: str = ""
) -> list[Check]:
    return [
        _same(
            "sample rate",
            _pick(sides.source, "sample_rate", source.rate or None),
            _pick(sides.output, "sample_rate", output.rate or None),
            sides,
            unit=" Hz",
            what=what,
        ),
        _same(
            "channels",
            _pick(sides.source, "channels", source.channels or None),
            _pick(sides.output, "channels", output.channels or None),
            sides,
            what=what,
        ),
    ]


def _duration(source: _AudioStream, output: _AudioStream) -> Check:
    if not source.rate or not output.rate:
        return Check("duration", False, "sample rate unknown: duration not measured")
    source_seconds = source.samples / source.rate
    output_seconds = output.samples / output.rate
    frame = max(source.frame_size, output.frame_size)
    allowed = max(1 / source.rate, frame / source.rate if frame else 0.0)
    if frame > 1:
        codec = source.codec if source.frame_size >= output.frame_size else output.codec
        tolerance = f"within {allowed:.6f} s, one {codec} frame of {frame} samples"
    else:
        tolerance = "within one sample"
    detail = (
        f"source {source_seconds:.6f} s ({source.samples} samples at {source.rate} Hz), "
        f"output {output_seconds:.6f} s ({output.samples} at {output.rate} Hz), {tolerance}"
    )
    passed = abs(source_seconds - output_seconds) <= allowed + 1e-9
    for side, stream in (("source", source), ("output", output)):
        if stream.error:
            passed = False
            detail += f"; {side} {stream.error}"
    return Check("duration", passed, detail)


def _pcm(source: Sequence[_AudioStream], output: Sequence[_AudioStream], instead: str) -> Check:
    name = "decoded PCM"
    if len(source) != len(output):
        return Check(name, False, f"source {len(source)} audio streams, output {len(output)}")
    lossy = [s.codec for s in source if not s.lossless]
    if len(lossy) == len(source):
        codecs = ", ".join(dict.fromkeys(lossy))
        return Check(
            name,
            True,
            f"source lossy ({codecs}): decoded PCM not comparable; {instead} compared instead",
        )
    parts: list[str] = []
    passed = True
    for number, (s, o) in enumerate(zip(source, output, strict=True), 1):
        where = f"stream {number}: " if len(source) > 1 else ""
        if not s.lossless:
            parts.append(f"{where}source lossy ({s.codec}), not comparable")
            continue
        if s.error or o.error:
            passed = False
            parts.append(f"{where}{'source' if s.error else 'output'} {s.error or o.error}")
            continue
        if s.rate != o.rate:
            passed = False
            parts.append(f"{where}sample rates differ ({s.rate} Hz, {o.rate} Hz): not compared")
            continue
        if s.channels != o.channels:
            passed = False
            parts.append(f"{where}channels differ ({s.channels}, {o.channels}): not compared")
            continue
        same = s.digest == o.digest and s.samples == o.samples
        passed = passed and same
        converted = ""
        if o.decoded_format and o.decoded_format != s.hashed_as:
            converted = f"; output decoded as {o.decoded_format}, converted"
        if s.samples == o.samples:
            sizes = f"{s.samples} samples"
        else:
            sizes = f"source {s.samples} samples, output {o.samples}"
        parts.append(
            f"{where}sha256 of decoded PCM ({s.hashed_as}, {_channels_text(s.channels)}, {sizes}"
            f"{converted}): {s.digest} {'=' if same else '≠'} {o.digest}"
        )
    return Check(name, passed, "; ".join(parts))


# -- video ------------------------------------------------------------------------------


def _video_checks(candidate: Candidate, wanted: set[str], sides: _Sides) -> list[Check]:
    compare_pcm = bool(wanted & {"pcm", "framemd5"})
    names = []
    if "properties" in wanted:
        names += ["streams", "frame count", "frame size", "frame rate"]
    if "framemd5" in wanted:
        names.append("frame MD5s")
    count = "properties" in wanted
    try:
        source = _media(
            candidate.source,
            count_frames=count,
            decode="lossless" if compare_pcm else (),
            hash_lossless=compare_pcm,
        )
    except Exception as err:  # noqa: BLE001
        pcm = ["decoded PCM"] if compare_pcm else []
        return _failed(names + pcm, "source", candidate.source, err)
    if compare_pcm and source.audio:
        names.append("decoded PCM")
    hash_as = {i: s.hashed_as for i, s in enumerate(source.audio) if s.hashed_as}
    try:
        output = _media(candidate.output, count_frames=count, decode=list(hash_as), hash_as=hash_as)
    except Exception as err:  # noqa: BLE001
        return _failed(names, "output", candidate.output, err)
    if source.video_streams == 0:
        return [Check(name, False, "the source has no video stream") for name in names]
    checks = []
    if "properties" in wanted:
        checks += _video_properties(source, output, sides)
    if "framemd5" in wanted:
        checks.append(_frame_md5s(candidate, source))
    if compare_pcm and source.audio:
        checks.append(_pcm(source.audio, output.audio, "sample rate and channels"))
    return checks


def _video_properties(source: _Media, output: _Media, sides: _Sides) -> list[Check]:
    def size(props: Mapping[str, Any], media: _Media) -> str | None:
        width, height = _pick(props, "width", media.width), _pick(props, "height", media.height)
        return None if width is None or height is None else f"{width}x{height}"

    def rate(props: Mapping[str, Any], media: _Media) -> float | None:
        measured = round(float(media.rate), 3) if media.rate else None
        value = _pick(props, "frame_rate", measured)
        return None if value is None else float(value)

    streams = (
        f"{source.video_streams} video, {len(source.audio)} audio",
        f"{output.video_streams} video, {len(output.audio)} audio",
    )
    checks = [
        Check(
            "streams",
            streams[0] == streams[1],
            f"source {streams[0]}, output {streams[1]} (attached pictures not counted)",
        ),
        _frame_count(source, output, sides),
        _same("frame size", size(sides.source, source), size(sides.output, output), sides),
    ]
    s_rate, o_rate = rate(sides.source, source), rate(sides.output, output)
    if s_rate is None or o_rate is None:
        checks.append(_same("frame rate", s_rate, o_rate, sides))
    else:
        detail = f"source {s_rate:.3f} fps, output {o_rate:.3f} fps"
        # both may be rounded to 3 decimals (the properties are): one unit of the last place
        checks.append(Check("frame rate", abs(s_rate - o_rate) <= 0.0011, detail))
    if source.audio:
        if output.audio:
            checks += _audio_properties(source.audio[0], output.audio[0], sides, what="audio")
        else:
            missing = "audio: the output has no audio stream"
            checks += [Check("sample rate", False, missing), Check("channels", False, missing)]
    return checks


def _frame_count(source: _Media, output: _Media, sides: _Sides) -> Check:
    count = _same(
        "frame count",
        source.video_packets,
        output.video_packets if output.video_streams else None,
        sides,
        what="video packets",
    )
    sides_read = (("source", source), ("output", output))
    errors = [f"{side} {media.demux_error}" for side, media in sides_read if media.demux_error]
    if errors:
        return Check("frame count", False, "; ".join([count.detail, *errors]))
    return count


def _frame_md5s(candidate: Candidate, source: _Media) -> Check:
    name = "frame MD5s"
    codec = source.video_codec or "unknown"
    if codec not in _LOSSLESS_VIDEO:
        return Check(
            name,
            True,
            f"source lossy ({codec}): decoded frames not comparable; "
            "frame count, size and rate compared instead",
        )
    pix_fmt = source.pix_fmt
    try:
        source_md5s = _framemd5(candidate.source, pix_fmt)
        output_md5s = _framemd5(candidate.output, pix_fmt)
    except _FfmpegFailed as err:
        return Check(name, False, str(err))
    if len(source_md5s) != len(output_md5s):
        first = _first_difference(source_md5s, output_md5s)
        detail = f"source {len(source_md5s)} frames, output {len(output_md5s)}{first}"
        return Check(name, False, detail)
    first = _first_difference(source_md5s, output_md5s)
    if first:
        return Check(name, False, f"{len(source_md5s)} frames{first}")
    listed = hashlib.sha256("\n".join(source_md5s).encode()).hexdigest()
    detail = (
        f"{len(source_md5s)} frames decoded as {pix_fmt}, every MD5 equal "
        f"(ffmpeg framemd5); sha256 of the MD5 list: {listed} = {listed}"
    )
    return Check(name, True, detail)


def _first_difference(source: Sequence[str], output: Sequence[str]) -> str:
    for number, (s, o) in enumerate(zip(source, output, strict=False), 1):
        if s != o:
            return f"; first difference at frame {number}: {s} ≠ {o}"
    return ""


class _FfmpegFailed(Exception):
    """ffmpeg did not give a frame list; the message is the check's detail."""


def _framemd5(path: Path, pix_fmt: str | None) -> list[str]:
    """The MD5 of each decoded frame of the first video stream, from ``ffmpeg -f framemd5``.

    ``0:V:0`` skips cover art; ``passthrough`` keeps every frame (the default
    for this muxer would drop frames sharing a timestamp); the input may only
    be a local file read by one of the demuxers ``open_media`` allows.
    """
    command = [
        "ffmpeg",
        "-nostdin",
        "-hide_banner",
        "-v",
        "error",
        "-protocol_whitelist",
        "file",
        "-format_whitelist",
        DEMUXERS,
        "-i",
        "file:" + os.fspath(Path(path).resolve()),
        "-map",
        "0:V:0",
        "-fps_mode",
        "passthrough",
    ]
    if pix_fmt:
        command += ["-pix_fmt", pix_fmt, "-sws_flags", "bicubic+accurate_rnd+bitexact"]
    command += ["-f", "framemd5", "-"]
    try:
        done = subprocess.run(command, capture_output=True, check=False)
    except FileNotFoundError:
        raise _FfmpegFailed("ffmpeg is not installed") from None
    except OSError as err:
        raise _FfmpegFailed(f"ffmpeg will not start: {err}") from err
    if done.returncode != 0:
        stderr = done.stderr.decode("utf-8", "replace")
        stderr = _error_text(RuntimeError(stderr), path).removeprefix("RuntimeError: ")
        raise _FfmpegFailed(
            f"ffmpeg framemd5 of {Path(path).name} exited {done.returncode}: {_short(stderr)}"
        )
    md5s = []
    for line in done.stdout.decode("ascii", "replace").splitlines():
        if line.startswith("#") or not line.strip():
            continue
        md5s.append(line.rsplit(",", 1)[-1].strip())
    return md5s


# -- documents --------------------------------------------------------------------------


def _page_check(candidate: Candidate, sides: _Sides) -> Check:
    name = "page count"
    try:
        source, why = _pages(candidate.source, sides.source)
    except Exception as err:  # noqa: BLE001
        source, why = None, _error_text(err, candidate.source)
    if source is None:
        reason = why or sides.why("source").strip(" ()")
        return Check(name, True, "source page count unknown" + (f" ({reason})" if reason else ""))
    try:
        output, why = _pages(candidate.output, sides.output)
    except Exception as err:  # noqa: BLE001
        return Check(
            name, False, f"source {source}, output unreadable: {_error_text(err, candidate.output)}"
        )
    if output is None:
        reason = why or sides.why("output").strip(" ()")
        return Check(
            name, False, f"source {source}, output unknown" + (f" ({reason})" if reason else "")
        )
    return Check(name, source == output, f"source {source}, output {output}")


def _pages(path: Path, properties: Mapping[str, Any]) -> tuple[int | None, str | None]:
    """Pages of a PDF (pikepdf), an office package (its own count), or the characterisation's.

    A PDF that cannot be opened falls back to the characterisation, then to
    "unknown" with the reason.
    """
    with open(path, "rb") as handle:
        head = handle.read(1024)
    if b"%PDF-" in head:
        import pikepdf

        try:
            with pikepdf.open(path) as pdf:
                return len(pdf.pages), None
        except pikepdf.PasswordError:
            why = "encrypted PDF"
        except pikepdf.PdfError as err:
            why = f"pikepdf: {_error_text(err, path)}"
        fallback = properties.get("page_count")
        return (int(fallback), None) if fallback is not None else (None, why)
    if head.startswith(b"PK\x03\x04"):
        pages = _package_pages(path)
        if pages is not None:
            return pages, None
    fallback = properties.get("page_count")
    return (int(fallback), None) if fallback is not None else (None, None)


def _package_pages(path: Path) -> int | None:
    """The page count an office package records: OpenDocument's or Office Open XML's.

    OpenDocument: ``meta:document-statistic/@meta:page-count`` in meta.xml;
    Office Open XML: ``<Pages>`` (``<Slides>`` for a presentation) in
    docProps/app.xml (what ExifTool reports, read here too because ExifTool
    needs Perl's Archive::Zip to open a package). Both are what the writing
    application counted when it saved.
    The XML is read with no entity expansion, DTD or network, and its size is
    bounded before it is read, as for any file we did not write.
    """
    from lxml import etree

    with zipfile.ZipFile(path) as package:
        names = set(package.namelist())
        member = "meta.xml" if "meta.xml" in names else "docProps/app.xml"
        if member not in names:
            return None
        info = package.getinfo(member)
        if info.file_size > _PACKAGE_XML_LIMIT:
            raise ValueError(f"{member} is {info.file_size} bytes, above {_PACKAGE_XML_LIMIT}")
        with package.open(info) as handle:
            data = handle.read(_PACKAGE_XML_LIMIT + 1)
    if len(data) > _PACKAGE_XML_LIMIT:
        raise ValueError(f"{member} is above {_PACKAGE_XML_LIMIT} bytes")
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    root = etree.fromstring(data, parser)
    if member == "meta.xml":
        values = [
            statistic.get(f"{{{_ODF_META}}}page-count")
            for statistic in root.iter(f"{{{_ODF_META}}}document-statistic")
        ]
    else:
        # A presentation counts slides, and each slide is a page of its PDF.
        values = [
            element.text
            for tag in ("Pages", "Slides")
            for element in root.iter(f"{{{_OOXML_APP}}}{tag}")
        ]
    for value in values:
        if value is not None and value.strip().isdigit():
            return int(value)
    return None


# -- small helpers ----------------------------------------------------------------------


def _channels_text(count: int) -> str:
    return f"{count} channel" if count == 1 else f"{count} channels"


def _error_text(err: BaseException, path: Path | None = None) -> str:
    """The exception in one line; ``path``, which libraries like to quote, becomes its name."""
    text = " ".join(str(err).split())
    if path is not None:
        for spelling in sorted({os.fspath(path), os.fspath(Path(path).resolve())}, key=len)[::-1]:
            text = text.replace(spelling, Path(path).name)
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _short(text: str, limit: int = _STDERR_LIMIT) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
