"""Regenerate the sample bags under ``examples/bags/``.

The bags are checked in so that a newcomer can run ``make demo`` at once; this
script exists so that anyone can see exactly how they were made and rebuild them
after a change. Every input is fixed (drawings, tone, text, zip timestamps,
Bagging-Date, file mtimes), so a rerun with the same library versions gives the
same bytes and the repository does not churn.

Usage::

    python examples/make_examples.py              # rewrite examples/bags/
    python examples/make_examples.py --out DIR    # write somewhere else (tests)

The payload is deliberately varied: nested folders, a non-ASCII file name, a
space in a name, and real files of the formats a curator sends most (PNG, TIFF,
JPEG, PDF, WAV, CSV, XML, DOCX, TXT), so that format identification, METS
writing and packaging all see realistic input.
"""

from __future__ import annotations

import argparse
import io
import math
import os
import shutil
import struct
import sys
import tempfile
import wave
import zipfile
from collections.abc import Callable
from pathlib import Path

import bagit
from PIL import Image, ImageDraw

__all__ = ["build_invalid_bag", "build_sample_collection", "main", "write_examples"]

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "bags"

#: 2024-05-01T00:00:00Z: every file and folder gets this mtime, so that a tar of
#: a freshly generated bag does not depend on when the script ran.
FIXED_MTIME = 1714521600
BAGGING_DATE = "2024-05-01"
CHECKSUMS = ["sha256", "sha512"]
SOFTWARE_AGENT = f"examples/make_examples.py (bagit.py v{bagit.VERSION})"


# -- file makers: each returns the bytes of one real, small file ---------------------------


def _drawing(size: tuple[int, int]) -> Image.Image:
    """A simple but non-trivial picture, so that encoders have something to encode."""
    width, height = size
    img = Image.new("RGB", size, (250, 246, 235))
    draw = ImageDraw.Draw(img)
    for x in range(0, width, 8):
        draw.line([(x, 0), (x, height)], fill=(225, 220, 205))
    draw.ellipse([width // 6, height // 6, width // 2, height * 5 // 6], fill=(200, 60, 40))
    draw.rectangle([width // 2, height // 4, width * 5 // 6, height * 3 // 4], fill=(40, 90, 160))
    draw.polygon(
        [(width // 3, height - 4), (width * 2 // 3, 4), (width - 4, height - 4)],
        outline=(20, 20, 20),
    )
    return img


def make_png() -> bytes:
    buf = io.BytesIO()
    _drawing((96, 64)).save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def make_tiff() -> bytes:
    buf = io.BytesIO()
    _drawing((80, 60)).convert("L").save(buf, format="TIFF", dpi=(300, 300))
    return buf.getvalue()


def make_jpeg() -> bytes:
    buf = io.BytesIO()
    img = _drawing((120, 80))
    draw = ImageDraw.Draw(img)
    for i in range(40):  # a gradient "sky": gives JPEG some real frequency content
        draw.line([(0, i), (119, i)], fill=(255, 160 + i * 2, 60 + i * 3))
    img.save(buf, format="JPEG", quality=85, optimize=False, progressive=False)
    return buf.getvalue()


def make_pdf() -> bytes:
    """A one-page PDF 1.4 with real text, its xref offsets computed, not guessed."""
    text = "Sample collection: condition report for object EX-2024-0001."
    content = f"BT /F1 14 Tf 56 760 Td ({text}) Tj ET\n".encode("ascii")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
        b"/Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"endstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Title (Condition report) /Producer (examples/make_examples.py) "
        b"/CreationDate (D:20240501000000Z) >>",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref_at = len(out)
    out += b"xref\n0 %d\n" % (len(objects) + 1)
    out += b"0000000000 65535 f \n"
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R /Info %d 0 R >>\n" % (len(objects) + 1, len(objects))
    out += b"startxref\n%d\n%%%%EOF\n" % xref_at
    return bytes(out)


def make_wav() -> bytes:
    """One second of a 440 Hz tone, 8 kHz 16-bit mono: small but a real recording."""
    rate = 8000
    frames = b"".join(
        struct.pack("<h", int(0.3 * 32767 * math.sin(2 * math.pi * 440 * n / rate)))
        for n in range(rate)
    )
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames)
    return buf.getvalue()


def make_csv() -> bytes:
    rows = ["object_id,title,width_mm,height_mm,acquired"]
    rows += [
        "EX-0001,Red circle study,210,297,1998-03-12",
        "EX-0002,Blue field,420,594,2001-11-02",
        'EX-0003,"Sunset, harbour",300,200,2010-06-21',
        "EX-0004,Tone test (440 Hz),,,2024-05-01",
    ]
    return ("\r\n".join(rows) + "\r\n").encode("utf-8")  # RFC 4180 line ends


def make_xml() -> bytes:
    return (
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b'<catalogue xmlns="urn:example:catalogue">\n'
        b'  <object id="EX-0001"><title>Red circle study</title>'
        b"<file>images/drawings/circle.png</file></object>\n"
        b'  <object id="EX-0002"><title>Blue field</title>'
        b"<file>images/scans/page-001.tif</file></object>\n"
        b'  <object id="EX-0003"><title>Sunset, harbour</title>'
        b"<file>images/photos/sunset.jpg</file></object>\n"
        b"</catalogue>\n"
    )


_DOCX_PARTS: list[tuple[str, str]] = [
    (
        "[Content_Types].xml",
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        '<Default Extension="rels" '
        'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        '<Default Extension="xml" ContentType="application/xml"/>'
        '<Override PartName="/word/document.xml" ContentType="application/'
        'vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/>'
        "</Types>",
    ),
    (
        "_rels/.rels",
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/'
        '2006/relationships/officeDocument" Target="word/document.xml"/>'
        "</Relationships>",
    ),
    (
        "word/document.xml",
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
        "<w:body>"
        "<w:p><w:r><w:t>Letter to the donor</w:t></w:r></w:p>"
        "<w:p><w:r><w:t>Thank you for entrusting these works to the archive.</w:t></w:r></w:p>"
        "</w:body></w:document>",
    ),
    (
        "word/_rels/document.xml.rels",
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        "</Relationships>",
    ),
]


def make_docx() -> bytes:
    """A real minimal OOXML word-processing package (PRONOM fmt/412 by container)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, text in _DOCX_PARTS:
            info = zipfile.ZipInfo(name, date_time=(2024, 5, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            info.create_system = 3
            zf.writestr(info, text.encode("utf-8"))
    return buf.getvalue()


def _text(s: str) -> Callable[[], bytes]:
    return lambda: s.encode("utf-8")


SAMPLE_FILES: dict[str, Callable[[], bytes]] = {
    "images/drawings/circle.png": make_png,
    "images/scans/page-001.tif": make_tiff,
    "images/photos/sunset.jpg": make_jpeg,
    "documents/condition-report.pdf": make_pdf,
    "documents/letter to donor.docx": make_docx,
    "audio/tone-440hz.wav": make_wav,
    "tables/measurements.csv": make_csv,
    "metadata/catalogue.xml": make_xml,
    "notes/café.txt": _text(
        "Notes taken at the café after the donor visit.\n"
        "Ünïcödé in the name and in the text, on purpose.\n"
    ),
}

SAMPLE_INFO: dict[str, str] = {
    "Source-Organization": "Musée d'Exemple des Beaux-Arts",
    "Organization-Address": "1 Rue de l'Exemple, 75000 Paris, France",
    "Contact-Name": "Hélène Martin",
    "Contact-Email": "archives@example.org",
    "External-Identifier": "EX-2024-0001",
    "External-Description": (
        "Sample collection: drawings, a scan, a photograph, a condition report, "
        "a letter, a test tone, a measurement table and catalogue notes."
    ),
    "Title": "Sample collection for the preservation pipeline",
    "Internal-Sender-Identifier": "sample-collection",
    "Bagging-Date": BAGGING_DATE,
    "Bag-Software-Agent": SOFTWARE_AGENT,
}

INVALID_FILES: dict[str, Callable[[], bytes]] = {
    "documents/minutes.txt": _text("Minutes of the acquisition committee, 2 May 2024.\n"),
    "images/drawings/circle.png": make_png,
}

INVALID_INFO: dict[str, str] = {
    "Source-Organization": "Musée d'Exemple des Beaux-Arts",
    "Contact-Name": "Hélène Martin",
    "External-Identifier": "EX-2024-0002",
    "External-Description": "A deliberately broken bag: see examples/README.txt.",
    "Bagging-Date": BAGGING_DATE,
    "Bag-Software-Agent": SOFTWARE_AGENT,
}


# -- bag builders ------------------------------------------------------------------------


def _write_payload(root: Path, files: dict[str, Callable[[], bytes]]) -> None:
    for rel, make in sorted(files.items()):
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(make())


def _make_bagit_1_0(bag_dir: Path, info: dict[str, str]) -> bagit.Bag:
    """bagit-python writes BagIt 0.97; we declare 1.0 and re-sign the tag files."""
    bagit.make_bag(str(bag_dir), dict(info), processes=1, checksums=CHECKSUMS)
    (bag_dir / "bagit.txt").write_text(
        "BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n", encoding="utf-8"
    )
    bag = bagit.Bag(str(bag_dir))
    bag.save()  # rewrites bag-info (unchanged) and both tag manifests
    return bagit.Bag(str(bag_dir))


def _fix_mtimes(root: Path) -> None:
    """Fixed mtimes make a tar of a fresh bag reproducible (files first, then folders)."""
    paths = sorted(root.rglob("*"), key=lambda p: len(p.parts), reverse=True)
    for path in [*paths, root]:
        os.utime(path, (FIXED_MTIME, FIXED_MTIME), follow_symlinks=False)


def build_sample_collection(bag_dir: Path) -> None:
    """A valid BagIt 1.0 bag: the happy path every stage should accept."""
    bag_dir.mkdir(parents=True)
    _write_payload(bag_dir, SAMPLE_FILES)
    bag = _make_bagit_1_0(bag_dir, SAMPLE_INFO)
    bag.validate()  # never ship a "valid" example that is not
    _fix_mtimes(bag_dir)


def build_invalid_bag(bag_dir: Path) -> None:
    """A bag with two payload problems and otherwise consistent tag files.

    Payload-Oxum and the tag manifests are brought in line with the damaged
    payload on purpose: a validator must then find the two real problems (a
    changed file, an unlisted file) rather than stop at a cheap Oxum mismatch.
    """
    bag_dir.mkdir(parents=True)
    _write_payload(bag_dir, INVALID_FILES)
    _make_bagit_1_0(bag_dir, INVALID_INFO)
    minutes = bag_dir / "data" / "documents" / "minutes.txt"
    minutes.write_bytes(minutes.read_bytes().replace(b"2 May", b"3 May"))  # same size
    (bag_dir / "data" / "documents" / "unlisted.txt").write_bytes(
        b"This file is in the payload but in no manifest.\n"
    )
    bag = bagit.Bag(str(bag_dir))
    files = [p for p in (bag_dir / "data").rglob("*") if p.is_file()]
    bag.info["Payload-Oxum"] = f"{sum(p.stat().st_size for p in files)}.{len(files)}"
    bag.save()
    _fix_mtimes(bag_dir)


BUILDERS: dict[str, Callable[[Path], None]] = {
    "sample-collection": build_sample_collection,
    "invalid-bag": build_invalid_bag,
}


def write_examples(out: Path) -> list[Path]:
    """Build every bag in a scratch folder, then swap it in, so readers never see half a bag."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, build in BUILDERS.items():
        scratch = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=out))
        try:
            build(scratch / name)
            final = out / name
            if final.exists():
                shutil.rmtree(final)
            (scratch / name).rename(final)
            written.append(final)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="target folder")
    args = parser.parse_args(argv)
    for path in write_examples(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
