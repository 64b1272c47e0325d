"""Format migration: a curator's decision, carried out as a new AIP version.

A policy (``policy.py``, a JSON file checked against
``schemas/format-policy.schema.json``) maps PRONOM ids to actions. The tools
that carry an action out live behind one small interface (``tools.py``);
what proves an output worthy of replacing its source is ``verify.py``; the
rest (planning, running per AIP, the version it makes) sits beside them.
"""

__all__: list[str] = []
