"""Validation of spec documents: the JSON Schema, plus what it cannot say, as one-line errors."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cema._paths import default_home
from cema.errors import SpecError

if TYPE_CHECKING:
    import yaml

#: the format version of ``cema.yaml`` this Cema reads
FORMAT_VERSION = 1
#: shipped as package data (tests/test_quality.py checks it matches specs/)
_SCHEMA_FILE = Path(__file__).resolve().parents[1] / "schemas" / "cema.schema.json"


@functools.cache
def _schema() -> dict[str, Any]:
    text = _SCHEMA_FILE.read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def key_path(parts: Sequence[str | int]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def node_at(node: yaml.Node | None, parts: Sequence[str | int]) -> yaml.Node | None:
    """The deepest YAML node along ``parts`` (for line numbers), or None without a document."""
    import yaml

    for part in parts:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if k.value == part), None)
            if match is None:
                key_node = next((k for k, _ in node.value if k.value == part), None)
                return key_node or node
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return node
            node = node.value[part]
        else:
            return node
    return node


def _key_node(node: yaml.Node | None, parts: Sequence[str | int], key: str) -> yaml.Node | None:
    import yaml

    parent = node_at(node, parts)
    if isinstance(parent, yaml.MappingNode):
        return next((k for k, _ in parent.value if k.value == key), parent)
    return parent


def short(value: Any, limit: int = 60) -> str:
    """``repr(value)`` for a message: cut when long (a number too long to print included)."""
    try:
        text = value if isinstance(value, str) and limit > 60 else repr(value)
    except ValueError:  # an int of more than 4,300 digits has no repr
        return f"a number of about {int(value.bit_length() * 0.30103)} digits"
    return text if len(text) <= limit else f"{text[: limit - 20]}... ({len(text)} characters)"


def _allowed_keys(schema: Mapping[str, Any]) -> list[str]:
    props = schema.get("properties")
    if props is None and "$ref" in schema:
        ref = str(schema["$ref"]).rsplit("/", 1)[-1]
        props = _schema()["$defs"][ref].get("properties")
    return sorted(props or {})


def _describe(error: Any, root: yaml.Node | None, file: Path | None) -> SpecError:
    """Turn the most relevant jsonschema error into one sentence with file, line and key."""
    parts: list[str | int] = list(error.absolute_path)
    validator = error.validator
    hint: str | None = None
    node = node_at(root, parts)
    if validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = _allowed_keys(error.schema)
        extra = sorted((k for k in error.instance if k not in allowed), key=str)
        bad = str(extra[0]) if extra else "?"
        node = _key_node(root, parts, bad)
        import difflib

        close = difflib.get_close_matches(bad, allowed, n=1, cutoff=0.5)
        hint = f"did you mean {close[0]!r}?" if close else f"allowed keys: {', '.join(allowed)}."
        message = f"unknown key {bad!r}"
        parts = [*parts, bad]
    elif validator == "propertyNames" or (
        validator == "pattern" and parts[:1] == ["environments"] and len(parts) == 1
    ):
        bad_name = short(error.instance)
        node = _key_node(root, parts, bad_name)
        if parts[:1] == ["environments"]:
            message = f"{bad_name!r} is not a valid environment name"
            hint = "use letters, digits, '.', '_' and '-' (no path separators, no '..')."
        else:
            message = f"{bad_name!r} is not a valid variable name"
            hint = "variable names are letters, digits and '_', not starting with a digit."
        parts = [*parts, bad_name]
    elif validator == "required":
        message = error.message.replace("is a required property", "is required")
        hint = "see specs/cema.schema.json for the format."
    elif validator == "type":
        expected = error.validator_value
        got = type(error.instance).__name__
        message = f"expected {expected}, got {got} ({short(error.instance)})"
        if parts and parts[-1] == "python":
            hint = 'quote the version: python: "3.10" (YAML reads 3.10 as the number 3.1).'
        elif expected == "array":
            hint = "write a YAML list, one item per line starting with '- '."
    elif validator == "enum":
        choices = [str(c) for c in error.validator_value]
        import difflib

        close = difflib.get_close_matches(short(error.instance), choices, n=1, cutoff=0.4)
        message = f"{short(error.instance)} is not one of {', '.join(choices)}"
        hint = f"did you mean {close[0]!r}?" if close else None
    elif validator == "oneOf" and len(parts) >= 2 and parts[-2] in ("conda", "pip"):
        message = f"expected a spec string or an entry with a `name`, got {short(error.instance)}"
        hint = (
            "write `- numpy>=1.26`, or `- {name: numpy, platforms: [linux-64],"
            " dependencies: false, optional: true}`."
        )
    elif validator == "const":
        message = f"{short(error.instance)} is not supported (expected {error.validator_value!r})"
        hint = f"this Cema reads format version {FORMAT_VERSION}."
    else:
        message = short(error.message, 200)
    line = node.start_mark.line + 1 if node is not None else None
    return SpecError(message, file=file, line=line, key=key_path(parts) or None, hint=hint)


def validate(data: Any, *, file: Path | None = None, root: yaml.Node | None = None) -> None:
    """Raise ``SpecError`` for the first (most relevant) schema violation in ``data``."""
    import jsonschema

    _check_other_format(data, file=file, root=root)
    validator = jsonschema.Draft202012Validator(_schema())
    errors = list(validator.iter_errors(data))
    if errors:
        # the first problem in the file, then the most relevant error about it
        def line(error: Any) -> int:
            node = node_at(root, list(error.absolute_path))
            return node.start_mark.line if node is not None else 0

        first = min(line(e) for e in errors)
        best = jsonschema.exceptions.best_match(e for e in errors if line(e) == first)
        raise _describe(best or errors[0], root, file)
    _check_requirements(data, file=file, root=root)


#: the start of a requirements line: a distribution name, or a pip option (``-r``, ``--hash``)
_REQUIREMENT_START = re.compile(r"^(-|[A-Za-z0-9][A-Za-z0-9._-]*\s*(\[|[<>=!~;@(]|\s|$))")


def _check_other_format(data: Any, *, file: Path | None, root: yaml.Node | None) -> None:
    """Refuse an environment.yml or requirements file saved as ``cema.yaml``, naming the fix."""
    if isinstance(data, dict) and "environments" not in data:
        found = [k for k in ("dependencies", "name", "prefix") if k in data]
        if not found:
            return
        kind, example = "a conda environment.yml", "environment.yml"
        node = _key_node(root, [], found[0])
        key: str | None = found[0]
    elif isinstance(data, str) and _REQUIREMENT_START.match(data.strip()):
        kind, example, node, key = "a pip requirements file", "requirements.txt", root, None
    else:
        return
    raise SpecError(
        f"this looks like {kind}, not a cema.yaml (it has no `environments`)",
        file=file,
        line=node.start_mark.line + 1 if node is not None else None,
        key=key,
        hint=f"`cema import FILE` writes a cema.yaml from it: `mv {file.name if file else 'FILE'}"
        f" {example} && cema import {example}`.",
    )


def _check_requirements(data: Any, *, file: Path | None, root: yaml.Node | None) -> None:
    """Every ``pip`` entry must be a PEP 508 requirement (the schema only says "string")."""
    from packaging.requirements import InvalidRequirement, Requirement

    for name, body in data["environments"].items():
        if (body or {}).get("kind") == "venv" and body.get("conda"):
            parts_kind: list[str | int] = ["environments", name, "kind"]
            node = node_at(root, parts_kind)
            raise SpecError(
                "a venv cannot have conda dependencies",
                file=file,
                line=node.start_mark.line + 1 if node is not None else None,
                key=key_path(parts_kind),
                hint="use `kind: conda` (or `auto`), or move the packages to `pip:`.",
            )
        for i, entry in enumerate((body or {}).get("pip", ())):
            text = entry if isinstance(entry, str) else entry["name"]
            try:
                Requirement(text)
            except InvalidRequirement as exc:
                parts: list[str | int] = ["environments", name, "pip", i]
                if not isinstance(entry, str):
                    parts.append("name")
                node = node_at(root, parts)
                raise SpecError(
                    f"{text!r} is not a valid pip requirement ({str(exc).splitlines()[0]})",
                    file=file,
                    line=node.start_mark.line + 1 if node is not None else None,
                    key=key_path(parts),
                    hint='write it as PEP 508 does, e.g. "requests>=2.31" or'
                    ' "pkg @ https://host/pkg-1.0-py3-none-any.whl".',
                ) from None


def error_at(
    file: Path | None, parts: Sequence[str | int], message: str, *, hint: str | None = None
) -> SpecError:
    """A ``SpecError`` at ``parts`` of ``file``, its line looked up now (for checks made after
    loading: the YAML is parsed again only on this error path)."""
    line = None
    if file is not None:
        from cema._fs import SPEC_LIMIT, read_text_capped
        from cema.model import _yaml

        try:
            root, _ = _yaml.load(read_text_capped(file, SPEC_LIMIT))
            node = node_at(root, parts)
            line = node.start_mark.line + 1 if node is not None else None
        except Exception:  # the file changed since, or cannot be read: no line then
            line = None
    return SpecError(message, file=file, line=line, key=key_path(parts), hint=hint)


def _validated_copy(text: str) -> Path:
    import xxhash

    from cema._version import __version__

    # the checks are code as well as schema: a new Cema validates every file again
    schema = _SCHEMA_FILE.read_bytes()
    key = xxhash.xxh3_128_hexdigest(
        __version__.encode() + b"\0" + schema + b"\0" + text.encode("utf-8")
    )
    return default_home() / "validated" / f"{key}.json"


def validated_document(text: str) -> Any | None:
    """The data of a ``cema.yaml`` text that passed every check before, or None.

    A no-op ``cema sync`` then pays for neither YAML parsing nor jsonschema.
    """
    try:
        from cema._fs import MiB, read_capped

        return json.loads(read_capped(_validated_copy(text), 64 * MiB))
    except (OSError, ValueError):
        return None


def remember_validated(text: str, data: Any) -> None:
    """Keep the data of a text that passed every check (when JSON holds it exactly)."""
    from cema._fs import atomic_write
    from cema.model.urls import URL_USERINFO

    if URL_USERINFO.search(text):  # a password in an index URL: no copy of it in the cache
        return
    try:
        encoded = json.dumps(data)
        if json.loads(encoded) != data:  # YAML dates, non-string keys...: parse again each time
            return
        copy = _validated_copy(text)
        copy.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(copy, encoded, durable=False)
    except (OSError, TypeError, ValueError):  # a read-only cache only costs speed
        pass


def check_duplicate_keys(
    node: yaml.Node | None, path: Path, parts: tuple[str | int, ...] = ()
) -> None:
    """Refuse a mapping that repeats a key (YAML would keep the last one silently)."""
    import yaml

    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key, value in node.value:
            if key.tag != "tag:yaml.org,2002:str":
                raise SpecError(
                    f"the key {short(key.value)} is not a string",
                    file=path,
                    line=key.start_mark.line + 1,
                    key=key_path(parts) or None,
                    hint="quote it (YAML reads on, yes, no and numbers as other types).",
                )
            if key.value in seen:
                raise SpecError(
                    f"the key {key.value!r} appears twice",
                    file=path,
                    line=key.start_mark.line + 1,
                    key=key_path([*parts, key.value]),
                    hint="keep one of them: YAML would silently use the last.",
                )
            seen.add(key.value)
            check_duplicate_keys(value, path, (*parts, key.value))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            check_duplicate_keys(item, path, (*parts, i))
