"""The receipt: what built a prefix, written last so that its presence means complete."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cema.model.lock import LockedPlatform

RECEIPT_VERSION = 1
#: the receipt's own hash: sha256 of its canonical JSON without this field
DIGEST_KEY = "digest"


def receipt_digest(data: dict[str, Any]) -> str:
    """``sha256:<hex>`` of a receipt's fields (all but the digest) as canonical JSON."""
    import hashlib  # only where a receipt is read or written: not on a no-op sync

    body = {k: v for k, v in data.items() if k != DIGEST_KEY}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True, kw_only=True, slots=True)
class Receipt:
    """What built a prefix; written last, so its presence means the prefix is complete."""

    address: str
    kind: str
    platform: str
    conda: tuple[tuple[str, str], ...] = ()
    pip: tuple[tuple[str, str], ...] = ()
    #: (name, build) of each conda package; empty in a receipt written before receipts had them
    builds: tuple[tuple[str, str], ...] = ()
    python: str | None = None
    engine: str = "rattler"
    created: float = 0.0
    #: how its files came from the package caches: ``hardlink`` (shared) or ``copy`` (its own)
    link: str = "hardlink"

    @classmethod
    def of(
        cls,
        content: LockedPlatform,
        *,
        address: str,
        interpreter: str | None,
        engine: str,
        created: float,
        link: str = "hardlink",
    ) -> Receipt:
        """The receipt of a prefix built from ``content`` (every builder writes this one).

        ``interpreter``: a venv's base interpreter version; conda envs name their ``python``.
        ``link``: how its files came from the package caches (``hardlink`` or ``copy``).
        """
        return cls(
            address=address,
            kind=content.kind,
            platform=content.platform,
            conda=tuple((r.name, r.version) for r in content.conda),
            pip=tuple((r.name, r.version) for r in content.pip),
            builds=tuple((r.name, r.build) for r in content.conda),
            python=interpreter or content.python_version(),
            engine=engine,
            created=created,
            link=link,
        )

    def packages(self) -> dict[str, str]:
        """Package name → version (conda and pip layers together)."""
        return {**dict(self.conda), **dict(self.pip)}

    def conda_builds(self) -> dict[str, str]:
        """Conda package name → build (empty for a receipt written before builds were kept)."""
        return dict(self.builds)

    def to_json(self) -> str:
        """Serialise for the receipt file, with the digest of its own content."""
        data: dict[str, Any] = {
            "receipt": RECEIPT_VERSION,
            "address": self.address,
            "kind": self.kind,
            "platform": self.platform,
            "python": self.python,
            "engine": self.engine,
            "created": self.created,
            "conda": [list(p) for p in self.conda],
            "pip": [list(p) for p in self.pip],
            # a key of its own, not a third item in "conda": older Cemas still read the receipt
            "builds": dict(self.builds),
        }
        if self.link != "hardlink":
            # absent means hardlink: the receipts (and scripts) of hard-linked prefixes are as
            # they always were
            data["link"] = self.link
        data[DIGEST_KEY] = receipt_digest(data)
        return json.dumps(data, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Receipt:
        """Parse a receipt; raise ``ValueError`` (or ``KeyError``/``TypeError``) if corrupt.

        A receipt whose digest does not match its content (edited by hand, or damaged) is
        refused, and so is one without a digest (written before receipts carried one): the
        store then treats its prefix as unfinished, and ``cema sync`` builds it again.
        """
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("a receipt is a JSON object")
        if data.get("receipt") != RECEIPT_VERSION:
            raise ValueError("unknown receipt version")
        if DIGEST_KEY not in data:
            raise ValueError("the receipt has no digest: an older Cema wrote it, or it was edited")
        if data[DIGEST_KEY] != receipt_digest(data):
            raise ValueError("the receipt does not match its digest: it was edited or damaged")
        return cls(
            address=str(data["address"]),
            kind=str(data["kind"]),
            platform=str(data["platform"]),
            python=data.get("python"),
            engine=str(data.get("engine", "rattler")),
            created=float(data.get("created", 0.0)),
            conda=tuple((str(n), str(v)) for n, v in data["conda"]),
            pip=tuple((str(n), str(v)) for n, v in data["pip"]),
            builds=_builds(data.get("builds", {})),
            link=_link(data.get("link", "hardlink")),
        )


def _link(data: Any) -> str:
    """A receipt's ``link`` (absent in hard-linked prefixes and older receipts), checked."""
    if data not in ("hardlink", "copy"):
        raise ValueError("a receipt's link is hardlink or copy")
    return str(data)


def _builds(data: Any) -> tuple[tuple[str, str], ...]:
    """A receipt's ``builds`` (name → build of each conda package), checked."""
    if not isinstance(data, dict) or not all(isinstance(b, str) for b in data.values()):
        raise ValueError("a receipt's builds map package names to build strings")
    return tuple(sorted((str(n), b) for n, b in data.items()))


__all__ = [
    "DIGEST_KEY",
    "RECEIPT_VERSION",
    "Receipt",
    "receipt_digest",
]
