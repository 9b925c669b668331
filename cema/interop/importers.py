"""Other tools' env files read as ``cema.yaml`` envs: environment.yml, requirements, conda-lock."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cema._fs import MiB, read_text_capped
from cema.errors import SpecError, UnreadableFileError
from cema.model.urls import is_local, redact_url

#: the largest file ``cema import`` reads
IMPORT_LIMIT = 16 * MiB
#: the hosts of PyPI's files: a locked package from there is pinned as ``name==version``
PYPI_FILES = ("files.pythonhosted.org",)
#: pip options about where packages come from, and the ``pypi-options`` key each one fills
INDEX_OPTIONS = {
    "-i": "index-url",
    "--index-url": "index-url",
    "--extra-index-url": "extra-index-urls",
    "-f": "find-links",
    "--find-links": "find-links",
}
#: pip options that change nothing Cema does (it locks hashes and installs with uv)
HARMLESS_OPTIONS = (
    "--require-hashes",
    "--pre",
    "--prefer-binary",
    "--only-binary",
    "--no-binary",
    "--trusted-host",
    "--use-feature",
)
_COMMENT = re.compile(r"(^|\s)#.*$")


@dataclass(kw_only=True)
class Imported:
    """What a file declares: envs as ``cema.yaml`` bodies, and the channels/platforms they use."""

    source: Path
    envs: dict[str, dict[str, Any]] = field(default_factory=dict)
    channels: list[str] | None = None
    platforms: list[str] | None = None
    notes: list[str] = field(default_factory=list)
    #: ``pypi-options`` from ``--index-url``, ``--extra-index-url`` and ``--find-links`` lines
    pypi_options: dict[str, Any] = field(default_factory=dict)
    #: the ``cema.yaml`` written (relative find-links are made relative to it), if known
    target: Path | None = None

    def with_pypi_options(self, body: dict[str, Any]) -> dict[str, Any]:
        """``body`` with the index options read, if any."""
        return {**body, "pypi-options": self.pypi_options} if self.pypi_options else body


def read_text(path: Path) -> str:
    """The text of a file to import, or a ``SpecError`` naming it."""
    try:
        return read_text_capped(path, IMPORT_LIMIT)
    except FileNotFoundError:
        raise SpecError(
            "no such file", file=path, hint="check the path given to `cema import`."
        ) from None
    except UnreadableFileError as exc:
        raise SpecError(exc.reason, file=path, line=exc.line) from None
    except OSError as exc:
        raise SpecError(f"cannot read the file ({exc.strerror or exc})", file=path) from None


def rebase_channel(channel: str, source: Path, target: Path) -> str:
    """A channel path relative to ``source``'s folder made relative to ``target``'s."""
    if channel.startswith("file://") or not is_local(channel):
        return redact_url(channel)
    path = Path(channel).expanduser()
    if path.is_absolute():
        return channel
    absolute = (source.parent / path).resolve()
    rel = os.path.relpath(absolute, target.parent.resolve()).replace(os.sep, "/")
    return rel if rel.startswith("../") else "./" + rel


def check_pip(text: str, *, file: Path, line: int | None) -> str:
    """``text`` if it is a PEP 508 requirement, else a ``SpecError`` at ``file:line``."""
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        Requirement(text)
    except InvalidRequirement as exc:
        raise SpecError(
            f"{text!r} is not a pip requirement Cema can declare ({str(exc).splitlines()[0]})",
            file=file,
            line=line,
            hint='Cema takes PEP 508 requirements, e.g. "requests>=2.31" or'
            ' "pkg @ https://host/pkg-1.0-py3-none-any.whl" (no editable or local paths).',
        ) from None
    return text


def pip_pin(name: str, version: str, url: str) -> str:
    """A locked pip package as a pinned requirement (its URL when it is not from PyPI)."""
    from urllib.parse import urlparse

    if not url or urlparse(url).hostname in PYPI_FILES:
        return f"{name}=={version}"
    return f"{name} @ {redact_url(url)}"


# --- requirements.txt -----------------------------------------------------------------------


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Lines with ``\\`` continuations joined and comments dropped, with their first line number."""
    out: list[tuple[int, str]] = []
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        if not pending:
            start = number
        line = raw.rstrip()
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        joined = _COMMENT.sub("", pending + line).strip()
        pending = ""
        if joined:
            out.append((start, joined))
    if pending.strip():
        out.append((start, _COMMENT.sub("", pending).strip()))
    return out


def _option(line: str) -> tuple[str, str]:
    """A pip option line as (option, value): ``--index-url=X``, ``-r file``, ``-rfile``."""
    if not line.startswith("-"):
        return "", ""
    head, _, rest = line.partition(" ")
    if head.startswith("--"):
        name, eq, value = head.partition("=")
        return name, (value if eq else rest).strip()
    if len(head) > 2:
        return head[:2], (head[2:] + " " + rest).strip()
    return head, rest.strip()


def requirement_entry(
    line: str, *, file: Path, number: int | None, imported: Imported, seen: set[Path]
) -> list[str]:
    """The requirements one pip line gives (``-r`` includes read recursively)."""
    option, value = _option(line)
    if option in ("-r", "--requirement"):
        return read_requirements(file.parent / value, imported, seen=seen)
    if option in INDEX_OPTIONS:
        _index_option(INDEX_OPTIONS[option], value, file=file, number=number, imported=imported)
        return []
    if option == "--no-index":
        imported.notes.append(
            f"{file}:{number}: --no-index left out: declare `pypi-options: {{index-url: ...}}`"
            " to keep PyPI out."
        )
        return []
    if option in ("-c", "--constraint"):
        raise SpecError(
            f"{line!r}: constraint files have no place in cema.yaml",
            file=file,
            line=number,
            hint="add the constraints to the requirements themselves (e.g. pkg>=1,<2).",
        )
    if option in ("-e", "--editable"):
        raise SpecError(
            f"{line!r}: editable installs are not locked by Cema",
            file=file,
            line=number,
            hint="build a wheel and require it by URL, or install it with `install_commands`.",
        )
    if option in HARMLESS_OPTIONS:
        imported.notes.append(f"{file}:{number}: {option} left out (Cema locks hashes itself).")
        return []
    if option:
        raise SpecError(
            f"{line!r}: this pip option has no equivalent in cema.yaml",
            file=file,
            line=number,
            hint="remove the line, or declare what it means as a requirement.",
        )
    requirement, hashed, _ = line.partition(" --")
    if hashed:
        imported.notes.append(f"{file}:{number}: the options after the requirement left out.")
    return [check_pip(requirement.strip(), file=file, line=number)]


def _index_option(
    key: str, value: str, *, file: Path, number: int | None, imported: Imported
) -> None:
    """One ``--index-url``/``--extra-index-url``/``--find-links`` line into ``pypi_options``."""
    if not value:
        raise SpecError(f"{key} without a value", file=file, line=number)
    written = redact_url(value)
    if written != value:
        imported.notes.append(
            f"{file}:{number}: the credentials in the {key} URL left out of cema.yaml: give them"
            " to uv by a netrc file or UV_INDEX_URL."
        )
    if key == "find-links" and "://" not in written:
        path = Path(written).expanduser()
        absolute = path if path.is_absolute() else (file.parent / path).resolve()
        written = str(absolute)
        if imported.target is not None and not path.is_absolute():
            rel = os.path.relpath(absolute, imported.target.parent.resolve()).replace(os.sep, "/")
            written = rel if rel.startswith("../") else "./" + rel
    options = imported.pypi_options
    if key == "index-url":
        if options.get(key) not in (None, written):
            raise SpecError(
                f"a second index URL ({written}) after {options[key]}",
                file=file,
                line=number,
                hint="keep one --index-url; make the others --extra-index-url.",
            )
        options[key] = written
    elif written not in options.setdefault(key, []):
        options[key].append(written)


def read_requirements(
    path: Path, imported: Imported, *, seen: set[Path] | None = None
) -> list[str]:
    """The requirements of a ``requirements.txt`` and of the files it includes."""
    seen = set() if seen is None else seen
    key = path.resolve()
    if key in seen:
        return []  # an include cycle: each file counts once
    seen.add(key)
    out: list[str] = []
    for number, line in _logical_lines(read_text(path)):
        out += requirement_entry(line, file=path, number=number, imported=imported, seen=seen)
    return out


def from_requirements(path: Path, target: Path | None = None) -> Imported:
    """A ``requirements.txt`` as one pip env (``default``), with its index options."""
    imported = Imported(source=path, target=target)
    pip = read_requirements(path, imported)
    if not pip:
        raise SpecError(
            "no requirement in this file", file=path, hint="add one, or check the file."
        )
    imported.envs["default"] = imported.with_pypi_options({"pip": pip})
    return imported


# --- environment.yml ------------------------------------------------------------------------


def _yaml_doc(path: Path) -> tuple[Any, Any]:
    import yaml

    text = read_text(path)
    try:
        return yaml.compose(text), yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise SpecError(
            f"this is not valid YAML: {exc.problem or exc.context or 'malformed YAML'}",
            file=path,
            line=mark.line + 1 if mark is not None else None,
        ) from None
    except yaml.YAMLError as exc:
        raise SpecError(f"this is not valid YAML: {exc}", file=path) from None


def _line(root: Any, parts: list[str | int]) -> int | None:
    from cema.model.validate import node_at

    node = node_at(root, parts)
    return node.start_mark.line + 1 if node is not None else None


def from_environment_yml(path: Path, target: Path) -> Imported:
    """An ``environment.yml``: name, channels, conda deps, the ``pip:`` sublist, ``variables``."""
    root, doc = _yaml_doc(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("dependencies", []), list):
        raise SpecError(
            "this is not an environment.yml (a mapping with `dependencies:` is expected)",
            file=path,
            hint="conda's environment files have `name`, `channels` and `dependencies`.",
        )
    imported = Imported(source=path, target=target)
    conda: list[str] = []
    pip: list[str] = []
    for i, entry in enumerate(doc.get("dependencies") or []):
        if isinstance(entry, str):
            conda.append(entry.strip())
        elif isinstance(entry, dict) and set(entry) == {"pip"}:
            for j, item in enumerate(entry["pip"] or []):
                number = _line(root, ["dependencies", i, "pip", j])
                line = _COMMENT.sub("", str(item)).strip()
                pip += requirement_entry(
                    line, file=path, number=number, imported=imported, seen={path.resolve()}
                )
        else:
            raise SpecError(
                f"dependency {entry!r} is neither a conda spec nor a `pip:` list",
                file=path,
                line=_line(root, ["dependencies", i]),
                hint="write conda specs as strings, pip requirements under `- pip:`.",
            )
    body: dict[str, Any] = {}
    if conda:
        body["conda"] = conda
    if pip:
        body["pip"] = pip
    variables = doc.get("variables") or {}
    if not isinstance(variables, dict):
        raise SpecError(
            "`variables` must be a mapping of names to values",
            file=path,
            line=_line(root, ["variables"]),
        )
    if variables:
        body["variables"] = {str(k): str(v) for k, v in variables.items()}
    channels = [str(c) for c in doc.get("channels") or [] if str(c) != "nodefaults"]
    if "defaults" in channels:
        imported.notes.append(
            "channel `defaults` is Anaconda's: Cema looks it up as conda.anaconda.org/defaults;"
            " replace it with the channels you mean."
        )
    if channels:
        imported.channels = [rebase_channel(c, path, target) for c in channels]
    name = doc.get("name")
    imported.envs[str(name) if name else "default"] = imported.with_pypi_options(body)
    return imported


# --- conda-lock.yml -------------------------------------------------------------------------


def is_conda_lock(doc: Any) -> bool:
    """True for a parsed ``conda-lock.yml`` (``version``, ``metadata``, ``package``)."""
    return isinstance(doc, dict) and {"version", "metadata", "package"} <= set(doc)


def _build_of(url: str, name: str, version: str) -> str | None:
    file = url.rstrip("/").rsplit("/", 1)[-1]
    for ext in (".conda", ".tar.bz2"):
        if file.endswith(ext):
            stem = file[: -len(ext)]
            prefix = f"{name}-{version}-"
            return stem[len(prefix) :] if stem.startswith(prefix) else None
    return None


def from_conda_lock(path: Path) -> Imported:
    """A ``conda-lock.yml``: every locked package as a pinned spec, per platform where needed."""
    root, doc = _yaml_doc(path)
    if not is_conda_lock(doc) or doc.get("version") not in (1, 2):
        raise SpecError(
            "this is not a conda-lock file of format version 1 or 2",
            file=path,
            hint="conda-lock files have `version`, `metadata` and `package`.",
        )
    meta = doc["metadata"] or {}
    platforms = [str(p) for p in meta.get("platforms") or []]
    pins: dict[tuple[str, str], list[str]] = {}
    for i, pkg in enumerate(doc["package"] or []):
        try:
            name, version, url = str(pkg["name"]), str(pkg["version"]), str(pkg.get("url", ""))
            manager, platform = pkg["manager"], str(pkg["platform"])
        except (KeyError, TypeError):
            raise SpecError(
                "a package without name, version, manager or platform",
                file=path,
                line=_line(root, ["package", i]),
            ) from None
        if manager == "conda":
            build = _build_of(url, name, version)
            spec = f"{name}=={version}" + (f"={build}" if build else "")
            key = ("conda", spec)
        elif manager == "pip":
            key = ("pip", pip_pin(name, version, url))
        else:
            raise SpecError(
                f"package {name!r} has manager {manager!r} (conda or pip expected)",
                file=path,
                line=_line(root, ["package", i, "manager"]),
            )
        pins.setdefault(key, []).append(platform)
    body: dict[str, Any] = {}
    for (layer, spec), where in sorted(pins.items()):
        entry: str | dict[str, Any] = spec
        if sorted(set(where)) != sorted(platforms):
            entry = {"name": spec, "platforms": sorted(set(where))}
        body.setdefault(layer, []).append(entry)
    imported = Imported(source=path, platforms=platforms or None)
    channels = [str(c["url"] if isinstance(c, dict) else c) for c in meta.get("channels") or []]
    if channels:
        imported.channels = [redact_url(c) for c in channels]
    imported.envs["default"] = body
    return imported


__all__ = [
    "IMPORT_LIMIT",
    "Imported",
    "check_pip",
    "from_conda_lock",
    "from_environment_yml",
    "from_requirements",
    "is_conda_lock",
    "pip_pin",
    "read_requirements",
    "read_text",
    "rebase_channel",
]
