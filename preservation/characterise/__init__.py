"""Ingest stage 5: what each file holds (characterisation), by the tools its format calls for.

``registry`` reads which tools and validators run for which PRONOM id
(``default-registry.json``, or ``settings.characterisation_registry``);
``tools`` holds the contract (``CharacterisationTool``, ``ToolRun``) and the
``ToolBox`` a worker keeps; ``mediainfo``, ``exiftool`` and ``ffprobe`` (ffprobe's
view through PyAV) implement it, each running once per batch of files, never
once per file, and ``siard`` describes a SIARD database archive from its own
metadata; ``properties`` turns their records into a few significant
properties with the same names whatever tool measured them; ``run`` is the
batch runner the characterise stage calls. Format validation (qpdf, jpylyzer,
Pillow, ffmpeg, XML, MediaConch, SIARD) lives in ``validation``.
"""

from preservation.characterise.exiftool import ExifTool
from preservation.characterise.ffprobe import FFprobe
from preservation.characterise.mediainfo import MediaInfo
from preservation.characterise.properties import PROPERTY_KEYS, significant_properties
from preservation.characterise.registry import (
    KINDS,
    TOOLS,
    VALIDATORS,
    FormatEntry,
    Registry,
    load_registry,
)
from preservation.characterise.run import Characterisation, FileToCharacterise, characterise
from preservation.characterise.tools import CharacterisationTool, ToolBox, ToolRun

__all__ = [
    "KINDS",
    "PROPERTY_KEYS",
    "TOOLS",
    "VALIDATORS",
    "Characterisation",
    "CharacterisationTool",
    "ExifTool",
    "FFprobe",
    "FileToCharacterise",
    "FormatEntry",
    "MediaInfo",
    "Registry",
    "ToolBox",
    "ToolRun",
    "characterise",
    "load_registry",
    "significant_properties",
]
