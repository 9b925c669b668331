"""Other tools' files: ``cema import`` reads them into cema.yaml, ``cema export`` writes them."""

from __future__ import annotations

#: the formats ``cema export`` writes
EXPORT_FORMATS = ("explicit", "environment-yml", "conda-lock", "requirements", "pylock")

__all__ = ["EXPORT_FORMATS"]
