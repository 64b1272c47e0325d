"""Preservation: an OAIS pipeline that keeps BagIt submissions on dual-site LTO tape."""

__version__ = "0.1.0"
