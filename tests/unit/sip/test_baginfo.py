"""bag-info.txt, bagit.txt and Payload-Oxum helpers, and the pure manifest parsers."""

from __future__ import annotations

from pathlib import Path

import pytest

from preservation.errors import InvalidSIPError
from preservation.sip import PayloadOxum, measure_payload, payload_oxum, read_bag_info
from preservation.sip.baginfo import parse_bag_declaration
from preservation.sip.manifest import (
    check_relative_path,
    decode_path,
    parse_fetch,
    parse_manifest,
)

from .conftest import BagFactory

SUITE = Path(__file__).resolve().parents[2] / "data" / "bagit-conformance-suite"


def test_bag_info_multivalued_in_order_with_folding(make_bag: BagFactory) -> None:
    bag = make_bag(oxum=False)
    (bag / "bag-info.txt").write_text(
        "Source-Organization: Archive\n"
        "Contact-Name: A\n"
        "External-Description: a long\n"
        "   description\n"
        "Contact-Name: B\n"
        "Payload-Oxum: 5006.2\n"
    )
    info = read_bag_info(bag)
    assert list(info) == [
        "Source-Organization",
        "Contact-Name",
        "External-Description",
        "Payload-Oxum",
    ]
    assert info["Contact-Name"] == ["A", "B"]
    # Folded lines are joined as the bagit library joins them (line break dropped).
    assert info["External-Description"] == ["a long   description"]
    assert payload_oxum(bag) == PayloadOxum(5006, 2) == measure_payload(bag)


def test_bag_info_in_declared_encoding_and_old_name() -> None:
    assert read_bag_info(SUITE / "v0.97/valid/UTF-16-encoded-tag-files")
    assert read_bag_info(SUITE / "v0.93/valid/basic-bag")  # package-info.txt
    separators = read_bag_info(SUITE / "v0.97/valid/uncommon-metadata-separators")
    assert separators["Test-Tag"] == ["1", "2", "3", "4", "5"]


def test_missing_bag_info_and_bad_oxum(make_bag: BagFactory) -> None:
    bag = make_bag(oxum=False)
    assert read_bag_info(bag) == {} and payload_oxum(bag) is None
    (bag / "bag-info.txt").write_text("Payload-Oxum: lots\n")
    with pytest.raises(InvalidSIPError):
        payload_oxum(bag)


@pytest.mark.parametrize(
    "raw",
    [
        b"BagIt-Version : 1.0\nTag-File-Character-Encoding: UTF-8\n",
        b"BagIt-Version: 1.0 \nTag-File-Character-Encoding: UTF-8\n",
        b"\xef\xbb\xbfBagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n",
        b"BagIt-Version: 1.0\n",
        b"BagIt-Version: .97\nTag-File-Character-Encoding: UTF-8\n",
        b"BagIt-Version: 1.0\nTag-File-Character-Encoding: NO-SUCH-CODEC\n",
        b"BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\nExtra: line\n",
    ],
)
def test_bag_declaration_is_strict(raw: bytes) -> None:
    declaration, problems = parse_bag_declaration(raw)
    assert problems and all(p.section == "2.1.1" for p in problems)


def test_bag_declaration_accepts_crlf_and_no_final_newline() -> None:
    declaration, problems = parse_bag_declaration(
        b"BagIt-Version: 0.97\r\nTag-File-Character-Encoding: UTF-8"
    )
    assert problems == [] and declaration is not None and declaration.version_info == (0, 97)


def test_percent_decoding_is_one_pass_and_only_three_codes() -> None:
    assert decode_path("a%25b") == "a%b"
    assert decode_path("a%250Ab") == "a%0Ab"
    assert decode_path("a%0Ab%0dc") == "a\nb\rc"
    assert decode_path("%7Etest%20x") == "%7Etest%20x"


@pytest.mark.parametrize(
    ("raw", "rule"),
    [
        ("../x", "path-traversal"),
        ("data\\..\\..\\x", "path-traversal"),
        ("/x", "path-absolute"),
        ("\\\\?\\UNC\\server\\x", "path-windows-absolute"),
        ("%HomeDrive%\\x", "path-windows-absolute"),
        ("~root/x", "path-home-shortcut"),
        ("data/a\x00b", "path-nul"),
    ],
)
def test_unsafe_relative_paths(raw: str, rule: str) -> None:
    path, problems = check_relative_path(raw, file="manifest-sha256.txt", section="2.1.3")
    assert path is None and [p.rule for p in problems] == [rule]


def test_dot_segments_are_normalised_with_a_warning() -> None:
    path, problems = check_relative_path("./data//x", file="m", section="2.1.3")
    assert path == "data/x" and [p.severity for p in problems] == ["warning"]


def test_manifest_parse_keeps_lines_and_flags_md5sum_marker() -> None:
    text = "D41D8CD98F00B204E9800998ECF8427E *data/x\n\n" + "0" * 32 + "  data/y z\n"
    entries, problems = parse_manifest(text, "manifest-md5.txt", "md5", 32, tag=False)
    assert [(e.line, e.path, e.digest[:4]) for e in entries] == [
        (1, "data/x", "d41d"),
        (3, "data/y z", "0000"),
    ]
    assert [p.rule for p in problems] == ["manifest-binary-marker"]


def test_manifest_paths_keep_trailing_whitespace() -> None:
    """Only the line terminator ends a path (RFC 8493 §2.1.3, §7.2)."""
    zeros = "0" * 32
    text = (
        f"{zeros}  data/x \n"  # two spaces between: still one separator
        f"{zeros}\t \tdata/tabbed\t\n"
        f"{zeros} data/nbsp\u00a0\r\n"
        f"{zeros} data/plain\n"
        "   \n"
    )
    entries, problems = parse_manifest(text, "manifest-md5.txt", "md5", 32, tag=False)
    assert problems == []
    assert [e.path for e in entries] == [
        "data/x ",
        "data/tabbed\t",
        "data/nbsp\u00a0",
        "data/plain",
    ]


def test_fetch_paths_keep_trailing_whitespace() -> None:
    entries, problems = parse_fetch("https://example.org/x 3   data/x  \n")
    assert problems == [] and [(e.length, e.path) for e in entries] == [(3, "data/x  ")]
