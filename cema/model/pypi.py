"""The ``pypi-options`` of a spec: the package indexes and find-links of the pip layer."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cema.model.urls import redact_url

#: the keys of ``pypi-options`` in ``cema.yaml``
KEYS = ("index-url", "extra-index-urls", "find-links")


@dataclass(frozen=True, kw_only=True, slots=True)
class PypiOptions:
    """Where uv looks for the pip layer's packages, as ``cema.yaml`` declares it."""

    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()
    #: the folder relative find-links start from (the spec's): not part of what is compared
    base: Path | None = field(default=None, compare=False)

    @classmethod
    def from_data(
        cls,
        project: Mapping[str, Any] | None,
        env: Mapping[str, Any] | None,
        *,
        base: Path | None,
    ) -> PypiOptions | None:
        """The env's options: its own keys, else the project's (key by key); None when none."""
        merged = {**(project or {}), **(env or {})}
        if not any(merged.get(k) for k in KEYS):
            return None
        return cls(
            index_url=merged.get("index-url") or None,
            extra_index_urls=tuple(merged.get("extra-index-urls") or ()),
            find_links=tuple(merged.get("find-links") or ()),
            base=base,
        )

    def to_data(self) -> dict[str, Any]:
        """The options as written in ``cema.yaml``."""
        out: dict[str, Any] = {}
        if self.index_url:
            out["index-url"] = self.index_url
        if self.extra_index_urls:
            out["extra-index-urls"] = list(self.extra_index_urls)
        if self.find_links:
            out["find-links"] = list(self.find_links)
        return out

    def canonical(self) -> dict[str, Any]:
        """What the spec hash takes: the options with credentials dropped (a new password is
        the same index), local find-links as written (a moved project stays fresh)."""
        return {key: _redacted(value) for key, value in self.to_data().items()}

    def find_link_locations(self) -> list[str]:
        """The find-links as uv takes them: relative folders made absolute from ``base``."""
        out = []
        for link in self.find_links:
            path = Path(link).expanduser()
            if "://" in link or path.is_absolute():
                out.append(link)
            else:  # a relative folder (``wheels``, ``./wheels``)
                out.append(str((self.base or Path.cwd()) / path))
        return out


def _redacted(value: str | list[str]) -> str | list[str]:
    return redact_url(value) if isinstance(value, str) else [redact_url(v) for v in value]


__all__ = ["KEYS", "PypiOptions"]
