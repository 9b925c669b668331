"""An imported file written into ``cema.yaml``: new, or extended with its comments kept."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cema.errors import SpecError
from cema.interop.importers import (
    Imported,
    from_conda_lock,
    from_environment_yml,
    from_requirements,
    is_conda_lock,
    read_text,
)
from cema.interop.pixi import from_pixi
from cema.model.spec import DEFAULT_CHANNELS, check_env_name, current_platform


@dataclass(frozen=True, kw_only=True, slots=True)
class ImportResult:
    """The new text of ``cema.yaml`` (checked by the spec loader) and what it gained."""

    text: str
    envs: tuple[str, ...]
    extended: bool
    notes: tuple[str, ...] = ()


def read_source(path: Path, target: Path) -> Imported:
    """Read ``path`` by its kind (name first, then content)."""
    name = path.name.lower()
    if name in {"pixi.toml", "pyproject.toml"}:
        return from_pixi(path, target)
    if name.endswith((".yml", ".yaml")):
        import yaml

        try:
            doc = yaml.safe_load(read_text(path))
        except yaml.YAMLError:
            doc = None  # the reader gives the error with its line
        if name.endswith("conda-lock.yml") or is_conda_lock(doc):
            return from_conda_lock(path)
        if isinstance(doc, dict) and "environments" in doc and "dependencies" not in doc:
            raise SpecError(
                "this looks like a cema.yaml already",
                file=path,
                hint="copy its environments by hand, or pass it to --project.",
            )
        return from_environment_yml(path, target)
    if name.endswith(".toml"):
        return from_pixi(path, target)
    return from_requirements(path, target)


def _rename(imported: Imported, env: str | None) -> dict[str, dict[str, Any]]:
    envs = imported.envs
    if env is None:
        return envs
    check_env_name(env)
    if len(envs) == 1:
        return {env: next(iter(envs.values()))}
    if env in envs:
        return {env: envs[env]}
    raise SpecError(
        f"{imported.source.name} declares several environments ({', '.join(sorted(envs))}),"
        f" not {env!r}",
        file=imported.source,
        hint="with several environments, --env picks one of them by name.",
    )


def _fit(body: dict[str, Any], imported: Imported, defaults: dict[str, Any]) -> dict[str, Any]:
    """``body`` with the source's channels and platforms where they differ from the file's."""
    out = dict(body)
    channels = out.pop("channels", None) or imported.channels
    platforms = out.pop("platforms", None) or imported.platforms
    if channels and list(channels) != defaults["channels"]:
        out["channels"] = list(channels)
    if platforms and list(platforms) != defaults["platforms"]:
        out["platforms"] = list(platforms)
    return out


def _dump(data: Any) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, width=1000)


def _appended(text: str, envs: dict[str, Any]) -> str | None:
    """``text`` with ``envs`` added at the end of its ``environments`` block (comments kept)."""
    import yaml

    root = yaml.compose(text)
    if not isinstance(root, yaml.MappingNode):
        return None
    block = next((v for k, v in root.value if getattr(k, "value", None) == "environments"), None)
    if not isinstance(block, yaml.MappingNode) or block.flow_style or not block.value:
        return None
    indent = block.value[0][0].start_mark.column
    if indent == 0:
        return None
    pos = block.value[-1][1].end_mark.index
    if pos > 0 and text[pos - 1] != "\n":
        newline = text.find("\n", pos)
        pos = len(text) if newline < 0 else newline + 1
    lines = _dump(envs).splitlines()
    added = "".join(" " * indent + line + "\n" for line in lines)
    head = text[:pos] if text[:pos].endswith("\n") else text[:pos] + "\n"
    return head + added + text[pos:]


def import_into(source: Path, target: Path, *, env: str | None = None) -> ImportResult:
    """The text of ``target`` (``cema.yaml``) with the envs of ``source`` added.

    A name the file already declares is refused (``env`` gives another). The result is
    checked by the spec loader: a bad input raises ``SpecError`` and nothing is to be written.
    """
    import yaml

    from cema.model.spec import project_from_dict

    imported = read_source(source, target)
    envs = _rename(imported, env)
    notes = list(imported.notes)
    existing = target.is_file()
    if existing:
        text = read_text(target)
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError:
            data = None
        if not isinstance(data, dict) or not isinstance(data.get("environments") or {}, dict):
            raise SpecError(
                "this file is not a cema.yaml Cema can add to",
                file=target,
                hint="fix it first (`cema lock` shows what is wrong).",
            )
    else:
        text, data = "", {"version": 1}
        if imported.channels:
            data["channels"] = imported.channels
        if imported.platforms:
            data["platforms"] = imported.platforms
        data["environments"] = {}
    defaults = {
        "channels": list(data.get("channels") or DEFAULT_CHANNELS),
        "platforms": list(data.get("platforms") or [current_platform()]),
    }
    declared = data.get("environments") or {}
    for name in envs:
        if name in declared:
            raise SpecError(
                f"environment {name!r} is already declared in {target}",
                file=source,
                hint="pass --env NEWNAME to import it under another name.",
            )
    fitted = {name: _fit(body, imported, defaults) for name, body in envs.items()}
    new_text = _appended(text, fitted) if existing else None
    data = {**data, "environments": {**declared, **fitted}}
    if new_text is None:
        if existing:
            notes.append(f"{target} was rewritten whole: its comments are gone.")
        new_text = _dump(data)
    try:
        project_from_dict(yaml.safe_load(new_text), path=target)
    except SpecError as exc:
        raise SpecError(
            f"the result would not be a valid cema.yaml ({exc.reason}"
            + (f", at {exc.key}" if exc.key else "")
            + ")",
            file=source,
            hint=exc.hint or "fix the file to import, then run `cema import` again.",
        ) from None
    return ImportResult(text=new_text, envs=tuple(fitted), extended=existing, notes=tuple(notes))


__all__ = ["ImportResult", "import_into", "read_source"]
