"""Access (OAIS): Dissemination Information Packages, recalled from tape in batches."""

__all__: list[str] = []
