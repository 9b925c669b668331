"""The receipt: what built a prefix, written last so that its presence means complete."""

from __future__ import annotations

import json
from dataclasses import dataclass

RECEIPT_VERSION = 1


@dataclass(frozen=True, kw_only=True, slots=True)
class Receipt:
    """What built a prefix; written last, so its presence means the prefix is complete."""

    address: str
    kind: str
    platform: str
    conda: tuple[tuple[str, str], ...] = ()
    pip: tuple[tuple[str, str], ...] = ()
    python: str | None = None
    engine: str = "rattler"
    created: float = 0.0

    def packages(self) -> dict[str, str]:
        """Package name → version (conda and pip layers together)."""
        return {**dict(self.conda), **dict(self.pip)}

    def to_json(self) -> str:
        """Serialise for the receipt file."""
        return json.dumps(
            {
                "receipt": RECEIPT_VERSION,
                "address": self.address,
                "kind": self.kind,
                "platform": self.platform,
                "python": self.python,
                "engine": self.engine,
                "created": self.created,
                "conda": [list(p) for p in self.conda],
                "pip": [list(p) for p in self.pip],
            },
            indent=1,
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> Receipt:
        """Parse a receipt; raise ``ValueError`` (or ``KeyError``/``TypeError``) if corrupt."""
        data = json.loads(text)
        if data.get("receipt") != RECEIPT_VERSION:
            raise ValueError("unknown receipt version")
        return cls(
            address=str(data["address"]),
            kind=str(data["kind"]),
            platform=str(data["platform"]),
            python=data.get("python"),
            engine=str(data.get("engine", "rattler")),
            created=float(data.get("created", 0.0)),
            conda=tuple((str(n), str(v)) for n, v in data["conda"]),
            pip=tuple((str(n), str(v)) for n, v in data["pip"]),
        )


__all__ = [
    "RECEIPT_VERSION",
    "Receipt",
]
