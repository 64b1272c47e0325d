"""SIARD 2.2: relational databases kept as XML, in and out of the archive.

A SIARD archive is a zip holding ``header/metadata.xml`` (the database's
structure) and, per table, an XML document of its rows with an XSD of its own.
``export`` writes one from a live database through SQLAlchemy; ``validate``
checks one (metadata against the format's XSD, every table against its own,
row counts against the metadata) with streaming parsers, so a table of
millions of rows costs no more memory than one of ten; ``reader`` gives the
rows back as Python values; ``load`` and ``access`` turn them into a database
again (PostgreSQL, SQLite) or CSV. ``model`` is the shape all of them share.
"""

__all__: list[str] = []
