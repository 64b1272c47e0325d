"""Preservation: an OAIS pipeline that keeps BagIt submissions on dual-site LTO tape."""

__version__ = "0.1.0"

#: How PREMIS events name this software as their executing program.
SOFTWARE_AGENT = f"preservation {__version__}"
