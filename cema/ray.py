"""Cema on Ray: the ``cema`` runtime_env plugin (workers in an env's python) and ``in_env``."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shlex
import shutil
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import ray
import xxhash
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from ray._private.runtime_env.plugin import RuntimeEnvPlugin

from cema._fs import atomic_write
from cema.engines import get_builder
from cema.environment import Environment
from cema.errors import CemaError, EnvError, EnvNotFoundError
from cema.model.lock import LOCK_FILENAME, LockedPlatform, Lockfile, check_fresh
from cema.model.lockio import read_lock, to_yaml
from cema.model.spec import SPEC_FILENAME, current_platform, load_project
from cema.store import Store
from cema.sync import resolve_targets, sync_lock

__all__ = ["PLUGINS_ENV_VAR", "CemaRuntimeEnvPlugin", "EnvFunction", "in_env", "runtime_env"]

LockArg = Lockfile | str | os.PathLike[str]
StoreArg = str | os.PathLike[str] | None

NAME = "cema"
PLUGINS_ENV_VAR = "RAY_RUNTIME_ENV_PLUGINS"
URI_SCHEME = "cema://"
#: after Ray's own plugins (default 10): Cema has the last word on the worker's interpreter
PRIORITY = 90
_FIELDS = frozenset({"lock", "env", "store", "engine", "variables"})
_CLASHING = ("conda", "pip", "uv", "py_executable", "container", "image_uri")  # set python too


def plugin_config(priority: int = PRIORITY) -> str:
    """The value of ``RAY_RUNTIME_ENV_PLUGINS`` that loads the plugin (set it on every node)."""
    return json.dumps([{"class": f"{__name__}.CemaRuntimeEnvPlugin", "priority": priority}])


# --- the field: parsed once per lock text and store, on the driver and in each node's agent ---


@dataclass(frozen=True, slots=True)
class _Request:
    """A validated ``cema`` field: one env of one lock, where it goes and how it is built."""

    text: str  # the env's lock alone, as text with absolute URLs
    digest: str
    env: str
    store: str | None
    engine: str
    variables: tuple[tuple[str, str], ...]
    lock: Lockfile  # parsed from ``text``


@cache
def _parse(text: str, digest: str, store: str | None) -> Lockfile:
    """A lock text parsed, through a copy in the store (read once per process)."""
    path = Store(store).root / "ray" / "locks" / digest / LOCK_FILENAME
    _write_once(path, text)
    return read_lock(path)


def _lock_text(locked: Lockfile, env: str) -> str:
    """The lock of ``env`` alone, as text with absolute URLs (an unknown env fails here)."""
    if env not in locked.envs:
        have = ", ".join(sorted(locked.envs)) or "none"
        raise EnvNotFoundError(
            f"environment {env!r} is not in {locked.path or 'the lock'} (it has: {have}).",
            hint="name one of them in the `env` of the cema runtime_env, or run `cema lock`.",
        )
    return to_yaml(replace(locked.with_envs([locked.env(env)]), path=None))


def _request(field: Any, *, ray_worker: bool = True) -> _Request:
    """The ``cema`` field checked: shape, lock, env, and (``ray_worker``) that it can run ray."""
    shaped = isinstance(field, Mapping) and not set(field) - _FIELDS
    if (
        not shaped
        or not isinstance(field.get("env"), str)
        or not isinstance(field.get("lock"), str)
    ):
        raise EnvError(
            f"the cema runtime_env must be a dict with `lock` and `env` strings, not {field!r}.",
            hint=f"its keys: {', '.join(sorted(_FIELDS))}; `lock` is a path or the lock's text.",
        )
    lock, env, store, engine = field["lock"], field["env"], field.get("store"), field.get("engine")
    if "\n" not in lock:  # a path, read where this runs (the helper sends the text instead)
        locked = read_lock(Path(lock))
        return _from_lockfile(locked, env, store=store, engine=engine, ray_worker=ray_worker)
    digest = xxhash.xxh3_128_hexdigest(lock.encode("utf-8"))[:16]
    parsed = _parse(lock, digest, store)
    _lock_text(parsed, env)  # the env is in it
    variables = tuple(sorted(dict(field.get("variables") or {}).items()))
    request = _Request(lock, digest, env, store, engine or "rattler", variables, parsed)
    if ray_worker:
        _check_ray_importable(request)
    return request


def _from_lockfile(
    locked: Lockfile, env: str, *, store: str | None, engine: str | None, ray_worker: bool
) -> _Request:
    """A request from a read lock: ``variables`` and ``engine`` from the ``cema.yaml`` beside."""
    text = _lock_text(locked, env)
    variables: tuple[tuple[str, str], ...] = ()
    spec_file = locked.path.parent / SPEC_FILENAME if locked.path is not None else None
    if spec_file is not None and spec_file.is_file():
        spec = load_project(spec_file)
        check_fresh(spec, locked, [env])  # a stale lock fails here
        engine = engine or spec.engine
        if env in spec.environments:
            variables = tuple(spec.environments[env].variables)
    field = {"lock": text, "env": env, "store": store, "engine": engine, "variables": variables}
    return _request(field, ray_worker=ray_worker)


def _content(request: _Request) -> LockedPlatform | None:
    """The env's locked content for this machine (None: not locked for it)."""
    return request.lock.env(request.env).platforms.get(current_platform())


def _own_ray(request: _Request) -> bool:
    content = _content(request)
    return content is not None and any(canonicalize_name(r.name) == "ray" for r in content.pip)


def _check_ray_importable(request: _Request) -> None:
    """A worker in the env imports ray: its own ``ray`` (pip layer) or this node's, same python."""
    content = _content(request)
    if content is None:
        return  # another platform's node: checked there, where it is built
    own = next((r for r in content.pip if canonicalize_name(r.name) == "ray"), None)
    if own is not None and own.version != ray.__version__:
        raise EnvError(
            f"environment {request.env!r} locks ray {own.version} but this Ray runs "
            f"{ray.__version__}: a Ray worker must run the cluster's Ray version.",
            hint=f"lock ray=={ray.__version__} in its pip entries, or drop it.",
        )
    here = ".".join(map(str, sys.version_info[:2]))
    python = content.python_version() or request.lock.env(request.env).python
    if own is None and (python is None or ".".join(python.split(".")[:2]) != here):
        raise EnvError(
            f"environment {request.env!r} has python {python or '(none locked)'} but this Ray "
            f"node runs ray {ray.__version__} on python {here}: a Ray worker in the env must "
            "import ray, and Cema lends the node's ray only to an env of the same python.",
            hint=f'lock it with python: "{here}", or add ray=={ray.__version__} to its pip.',
        )


def _write_once(path: Path, text: str) -> None:
    try:
        if path.read_text("utf-8") == text:
            return
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, text)  # processes sharing the store write the same text


# --- on a node: sync the env (no solve), lend it ray ----------------------------------------


def _address(request: _Request) -> str:
    return resolve_targets(request.lock, [request.env], platform=current_platform())[0].address


def _sync(request: _Request) -> tuple[Environment, str]:
    """Sync the env into the node's store from its lock (``--frozen``); the env and address."""
    store, address = Store(request.store), _address(request)
    # the copy the prefix is synced from is its gc root on this node, one folder per prefix
    path = store.root / "ray" / "envs" / address / request.digest / LOCK_FILENAME
    _write_once(path, request.text)
    lock = read_lock(path, cache_dir=store.root / "cache" / "locks")
    builder = lambda: get_builder(request.engine)  # noqa: E731  # loaded only to build
    result = sync_lock(store, lock, [request.env], platform=current_platform(), builder=builder)
    return _environment(request, result.prefixes[request.env]), address


def _environment(request: _Request, prefix: Path) -> Environment:
    kind = request.lock.env(request.env).for_platform(current_platform()).kind
    return Environment(request.env, prefix, kind=kind, variables=request.variables)


@cache
def _ray_closure() -> tuple[metadata.Distribution, ...]:
    """``ray`` and its requirements (no extras) as a worker sees them, not as Ray's agent does."""
    seen: dict[str, metadata.Distribution] = {}
    todo = ["ray"]  # the agent's sys.path has Ray's vendored copies first (thirdparty_files)
    where = [p for p in sys.path if not Path(p).is_relative_to(Path(ray.__file__).parent)]
    while todo:
        name = canonicalize_name(todo.pop())
        found = [] if name in seen else list(metadata.distributions(name=name, path=where))
        if not found:
            continue
        seen[name] = dist = found[0]
        for text in dist.requires or ():
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return tuple(seen.values())


def _top_level(dist: metadata.Distribution) -> set[Path]:
    """What a distribution puts in site-packages (of a namespace package, its own portion)."""
    out: set[Path] = set()
    for file in dist.files or ():
        parts = Path(file).parts
        if not parts or parts[0] in ("..", "__pycache__") or parts[0].endswith((".data", ".pth")):
            continue
        root = Path(str(dist.locate_file(parts[0])))
        package = root.is_dir() and not parts[0].endswith(".dist-info")
        if package and len(parts) > 2 and not (root / "__init__.py").exists():
            out.add(Path(parts[0], parts[1]))  # a namespace package (google/protobuf)
        else:
            out.add(Path(parts[0]))
    return out


def _ray_overlay(store: Store, address: str, environment: Environment) -> Path:
    """Links to this node's ray and what it needs that the env lacks (it shadows nothing)."""
    target = store.root / "ray" / "overlays" / f"{address}-ray{ray.__version__}"
    if target.is_dir():
        return target
    prefix = environment.prefix
    assert prefix is not None
    patterns = ("lib/python*/site-packages/*.dist-info", "Lib/site-packages/*.dist-info")
    has = {canonicalize_name(d.name.split("-")[0]) for p in patterns for d in prefix.glob(p)}
    staging = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for dist in _ray_closure():
        if canonicalize_name(dist.metadata["Name"]) in has:
            continue
        for rel in _top_level(dist):
            link = staging / rel
            if not link.exists():
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(Path(str(dist.locate_file(rel))))
    try:
        os.replace(staging, target)
    except OSError:  # another worker published it first: the same links
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _size(path: Path) -> int:
    return sum((Path(d) / f).lstat().st_size for d, _, files in os.walk(path) for f in files)


def _ray_error(exc: CemaError) -> ValueError:  # as Ray shows it in RuntimeEnvSetupError
    hint = f" Hint: {exc.hint}" if exc.hint else ""
    return ValueError(f"cema runtime_env: {exc.message}{hint}")


class CemaRuntimeEnvPlugin(RuntimeEnvPlugin):  # type: ignore[misc, unused-ignore]  # Any without ray
    """``runtime_env={"cema": {"lock": ..., "env": ...}}``: the worker runs in the env's python.

    Loaded by ``RAY_RUNTIME_ENV_PLUGINS=<plugin_config()>`` on every node; URI ``cema://<address>``.
    """

    name = NAME
    priority = PRIORITY

    def __init__(self) -> None:
        self._stores: dict[str, str | None] = {}  # address → store, for delete_uri

    @staticmethod
    def validate(runtime_env_dict: dict[str, Any]) -> None:
        """The field's shape, lock and env, and that a worker in the env can import ray."""
        clash = [k for k in _CLASHING if runtime_env_dict.get(k)]
        if clash:
            raise ValueError(
                f"cema runtime_env: it chooses the worker's interpreter, as {clash} do; use one."
            )
        try:
            _request(runtime_env_dict[NAME])
        except CemaError as exc:
            raise _ray_error(exc) from exc

    def get_uris(self, runtime_env: Any) -> list[str]:
        """One URI: the env's prefix address on this node (none for a bad field: ``validate``
        reports it; Ray asks every plugin of every runtime_env, where an exception is a 500)."""
        try:
            return [URI_SCHEME + _address(_request(runtime_env[NAME]))]
        except (CemaError, KeyError):  # KeyError: no ``cema`` field (a ``pip`` one, say)
            return []

    async def create(
        self, uri: str | None, runtime_env: Any, context: Any, logger: logging.Logger
    ) -> float:
        """Sync the env into this node's store (in a thread: the agent keeps serving)."""
        return await asyncio.to_thread(self._create, runtime_env[NAME], logger)

    def _create(self, field: Any, logger: logging.Logger) -> float:
        try:
            request = _request(field)
            logger.info("cema: syncing %r into %s", request.env, Store(request.store).root)
            environment, address = _sync(request)
            self._stores[address] = request.store
            size = _size(environment.prefix) if environment.prefix else 0
            if not _own_ray(request):
                _ray_overlay(Store(request.store), address, environment)
        except CemaError as exc:
            raise _ray_error(exc) from exc
        logger.info("cema: %r is ready at %s", request.env, environment.prefix)
        return float(size)

    def modify_context(
        self, uris: list[str], runtime_env: Any, context: Any, logger: logging.Logger
    ) -> None:
        """The env's python as the worker's interpreter, its activation as the variables."""
        request = _request(runtime_env[NAME])
        store = Store(request.store)
        address = uris[0][len(URI_SCHEME) :] if uris else _address(request)
        environment = _environment(request, store.prefix(address))
        base = dict(os.environ)
        activated = environment.environ(base)
        for key, value in activated.items():
            if base.get(key) != value:
                context.env_vars[key] = value
        for key in ("PYTHONHOME", "__PYVENV_LAUNCHER__"):
            if key in base and key not in activated:
                context.env_vars[key] = ""  # python ignores an empty one
        paths = [context.env_vars.get("PYTHONPATH", "")]  # working_dir, py_modules
        if not _own_ray(request):
            paths.append(str(_ray_overlay(store, address, environment)))
        context.env_vars["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
        python = str(environment.python)
        context.py_executable = python if sys.platform == "win32" else shlex.quote(python)
        logger.info("cema: worker runs %s in env %r", python, request.env)

    def delete_uri(self, uri: str, logger: logging.Logger) -> float:
        """Drop this node's Ray root of the prefix and remove it unless something else uses it."""
        address = uri[len(URI_SCHEME) :]
        store = Store(self._stores.pop(address, None))
        for folder in ("envs", address), ("overlays", f"{address}-ray{ray.__version__}"):
            shutil.rmtree(store.root.joinpath("ray", *folder), ignore_errors=True)
        prefix = store.prefix(address)
        size = _size(prefix) if prefix.is_dir() else 0
        removed = store.remove_unreferenced(address)
        logger.info("cema: %s %s", "removed" if removed else "kept (still used)", prefix)
        return float(size if removed else 0)


def runtime_env(
    lock: LockArg, env: str, *, store: StoreArg = None, engine: str | None = None
) -> dict[str, Any]:
    """``{"cema": {...}}`` for ``runtime_env=``, checked now, on the driver.

    An unknown env, a lock that is unreadable or older than its ``cema.yaml``, or an env whose
    worker could not import ray raise here, before anything is submitted. The field carries the
    env's lock as text (so nodes need no shared filesystem) and its spec ``variables``.
    """
    return {NAME: _field(lock, env, store=store, engine=engine, ray_worker=True)}


def _field(
    lock: LockArg, env: str, *, store: StoreArg, engine: str | None, ray_worker: bool
) -> dict[str, Any]:
    locked = lock if isinstance(lock, Lockfile) else read_lock(Path(lock))
    where = None if store is None else os.fspath(store)
    if where is not None and not where.startswith("~"):
        where = str(Path(where).absolute())
    request = _from_lockfile(locked, env, store=where, engine=engine, ray_worker=ray_worker)
    field: dict[str, Any] = {"lock": request.text, "env": env, "engine": request.engine}
    if request.variables:
        field["variables"] = dict(request.variables)
    if where is not None:
        field["store"] = where
    return field


# --- in_env: a task in the host's env that calls into the env through Cema's runtime ---------

_hosted: dict[tuple[str, str, str | None], Environment] = {}
_hosted_lock = threading.Lock()


class EnvFunction:
    """``module.function`` run inside an env from a Ray task; see ``in_env``."""

    def __init__(self, field: dict[str, Any], module: str, function: str, timeout: float | None):
        self.field, self.module, self.function, self.timeout = field, module, function, timeout
        self.source = Path(module).read_bytes() if module.endswith(".py") else None
        self.digest = xxhash.xxh3_128_hexdigest(self.source)[:24] if self.source else ""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the function in the env's worker on this node (synced, launched on first use)."""
        request = _request(self.field, ray_worker=False)  # called into: the env needs no ray
        with _hosted_lock:
            key = (request.digest, request.env, request.store)
            environment = _hosted.get(key) or _hosted.setdefault(key, _sync(request)[0])
        if not environment.launched():  # launch() also relaunches a dead worker
            environment.launch()
        module = self.module
        if self.source is not None:  # the shipped source, written once per content on a node
            path = Store(request.store).root / "ray" / "modules" / self.digest / Path(module).name
            if not path.is_file():
                path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write(path, self.source, durable=False)
            module = str(path)
        return environment.execute(module, self.function, args, kwargs, timeout=self.timeout)

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        """Submit it as a Ray task (in the host's env); an ``ObjectRef`` of the result."""
        return _task().remote(self, args, kwargs)


def _call(fn: EnvFunction, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return fn(*args, **kwargs)


@cache
def _task() -> Any:
    return ray.remote(_call)


def in_env(
    env: str,
    module: str | os.PathLike[str],
    function: str,
    *,
    lock: LockArg = LOCK_FILENAME,
    store: StoreArg = None,
    timeout: float | None = None,
) -> EnvFunction:
    """A picklable callable running ``module.function(*args, **kwargs)`` in env ``env``.

    Call it in a Ray task or submit it with ``.remote(*args)``; the lock is checked now and
    travels as text. Each Ray worker syncs the env on first use and keeps its env worker.
    ``module``: a ``.py`` file (its source travels along) or a module importable in the env.
    """
    field = _field(lock, env, store=store, engine=None, ray_worker=False)
    return EnvFunction(field, os.fspath(module), function, timeout)
