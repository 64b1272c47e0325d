"""What the planner gives each file: the policy's actions, minus what the file already is."""

from __future__ import annotations

from typing import Any

from preservation.catalog.models import File
from preservation.migrate.plan import _produced, actions_for
from preservation.migrate.policy import load_policy

POLICY = load_policy(None)


def file(puid: str, id: int = 1, derived_from: int | None = None, **properties: Any) -> File:
    return File(id=id, puid=puid, derived_from=derived_from, properties=properties)


def ids(f: File, produced: frozenset[str] = frozenset()) -> list[str]:
    return [a.id for a in actions_for(POLICY, f, produced)]


def test_a_word_file_becomes_pdfa_and_odt_and_an_odt_only_pdfa() -> None:
    assert ids(file("fmt/412")) == ["text-to-pdfa-2b", "text-to-odt"]
    assert ids(file("fmt/290")) == ["text-to-pdfa-2b"]


def test_images_already_uncompressed_tiff_stay_and_compressed_ones_go() -> None:
    assert ids(file("fmt/353", compression="None")) == []
    assert ids(file("fmt/353", compression="LZW")) == ["image-to-tiff"]
    assert ids(file("fmt/43", compression="JPEG")) == ["image-to-tiff"]


def test_a_matroska_film_not_in_ffv1_still_becomes_ffv1() -> None:
    assert ids(file("fmt/569", video_codec="AVC", audio_codec="AAC")) == ["video-to-ffv1-mkv"]
    assert ids(file("fmt/569", video_codec="FFV1", audio_codec="FLAC")) == []


def test_an_mpeg4_holding_only_sound_is_migrated_as_sound() -> None:
    assert ids(file("fmt/199", audio_codec="AAC", duration=3.0)) == ["audio-to-wav"]
    assert ids(file("x-fmt/384", audio_codec="ALAC")) == ["audio-to-flac"]
    assert ids(file("fmt/199", video_codec="AVC", audio_codec="AAC")) == ["video-to-ffv1-mkv"]


def test_what_a_source_already_has_is_not_made_again() -> None:
    word = file("fmt/412", id=1)
    pdf = file("fmt/477", id=2, derived_from=1)
    odt = file("fmt/290", id=3, derived_from=1)
    produced = _produced([word, pdf, odt])
    assert produced[3] == frozenset({"fmt/477", "fmt/290"})
    assert ids(odt, produced[3]) == []  # its sibling is the PDF/A
    # A Word file whose ODT was refused last time, its PDF/A kept: only the ODT is tried.
    assert ids(word, _produced([word, pdf])[1]) == ["text-to-odt"]
