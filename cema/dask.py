"""Cema on Dask: a worker plugin that syncs locked envs on every worker, and env calls in tasks."""

from __future__ import annotations

import asyncio
import copy
import logging
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import xxhash
from distributed import Worker as DaskWorker
from distributed import WorkerPlugin, get_worker

from cema._fs import atomic_write
from cema.engines import get_builder
from cema.environment import Environment
from cema.errors import CemaError, EngineError, EnvNotFoundError
from cema.model.lock import LOCK_FILENAME, Lockfile
from cema.model.lockio import read_lock, to_yaml
from cema.model.spec import SPEC_FILENAME, current_platform, load_project
from cema.model.urls import file_url_path, to_portable
from cema.store import Store
from cema.sync import sync_lock

__all__ = ["CemaPlugin", "EnvFunction", "in_env"]

log = logging.getLogger(__name__)

#: where on each Dask worker the source of ``.py`` modules shipped with tasks is cached
MODULE_CACHE_DIR = "cema-modules"


_STATE = frozenset(
    {"lock_text", "lock_digest", "envs", "store", "engine", "variables", "name"}
    | {"lock_origin", "local_channels"}
)


class CemaPlugin(WorkerPlugin):  # type: ignore[misc, unused-ignore]  # Any without distributed
    """Sync the locked envs on every Dask worker (no solve: ``--frozen``) and host their workers.

    ``lock`` is a ``cema.lock`` path or a ``Lockfile``; ``envs`` the env names (all by default);
    ``store`` the store folder as seen from the workers (default: each node's ``CEMA_HOME``).
    Spec ``variables`` are not part of the lock: they are taken from the ``cema.yaml`` beside
    the lock when there is one. Register with ``client.register_plugin(CemaPlugin(...))``.
    """

    idempotent = False

    def __init__(
        self,
        lock: Lockfile | str | os.PathLike[str],
        envs: Sequence[str] | None = None,
        store: str | os.PathLike[str] | None = None,
        *,
        engine: str | None = None,
    ) -> None:
        locked = lock if isinstance(lock, Lockfile) else read_lock(Path(lock))
        names = tuple(envs) if envs is not None else tuple(sorted(locked.envs))
        for env in names:
            locked.env(env)  # an unknown name fails here, on the client
        spec_file = locked.path.parent / SPEC_FILENAME if locked.path is not None else None
        variables: dict[str, tuple[tuple[str, str], ...]] = {}
        spec_engine = None
        if spec_file is not None and spec_file.is_file():
            spec = load_project(spec_file)
            spec_engine = spec.engine
            variables = {
                n: tuple(spec.environments[n].variables) for n in names if n in spec.environments
            }
        #: the lock as text with absolute URLs: it is rebuilt on each worker, not read there
        self.lock_text = to_yaml(replace(locked, path=None))
        self.lock_digest = xxhash.xxh3_128_hexdigest(self.lock_text.encode("utf-8"))[:16]
        self.envs = names
        self.store = _store_path(store)
        self.engine = engine or spec_engine or "rattler"
        self.variables = variables
        #: where the lock was read, and its local channels written relative to that folder
        self.lock_origin = str(locked.path.parent) if locked.path is not None else None
        self.local_channels = _relative_channels(locked, names)
        key = f"{self.lock_digest}|{','.join(names)}|{self.store}"
        self.name = f"cema-{xxhash.xxh3_64_hexdigest(key.encode('utf-8'))[:12]}"
        self._reset()

    def _reset(self) -> None:
        self._synced: dict[str, Environment] = {}
        self._error: BaseException | None = None
        self._worker_label = ""
        self._modules: dict[str, str] = {}
        self._module_dir: Path | None = None
        self._module_lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k in _STATE}

    def __setstate__(self, state: Mapping[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset()

    def __repr__(self) -> str:
        return f"<CemaPlugin {self.name} envs={list(self.envs)} store={self.store or 'CEMA_HOME'}>"

    # -- Dask's hooks ----------------------------------------------------------------------------

    async def setup(self, worker: DaskWorker) -> None:
        """Sync the envs in a thread: the worker's event loop keeps answering the scheduler."""
        self._worker_label = f"{worker.name} ({worker.address})"
        self._module_dir = Path(worker.local_directory) / MODULE_CACHE_DIR
        try:
            await asyncio.to_thread(self._sync)
        except Exception as exc:
            self._error = _on_worker(exc, self._worker_label)
            raise self._error from exc

    def teardown(self, worker: DaskWorker) -> None:
        """Stop the env workers this plugin launched on ``worker``."""
        for environment in self._synced.values():
            try:
                environment.exit()
            except Exception:  # one env's failure must not keep the others running
                log.exception("stopping the env worker of %r failed", environment.name)

    # -- the sync ---------------------------------------------------------------------------------

    def _sync(self) -> None:
        store = Store(self.store)
        log.info("syncing %s into %s", ", ".join(self.envs), store.root)
        lock_path = self._materialise_lock(store)
        lock = read_lock(lock_path, cache_dir=store.root / "cache" / "locks")
        platform = current_platform()
        builder = lambda: get_builder(self.engine)  # noqa: E731  # loaded only to build
        try:
            result = sync_lock(store, lock, self.envs, platform=platform, builder=builder)
        except CemaError as exc:
            missing = [(w, f) for w, f in self.local_channels if not Path(f).is_dir()]
            if not missing:
                raise
            raise _unseen_channels(missing, self.lock_origin, exc) from exc
        for name in self.envs:
            self._synced[name] = Environment(
                name,
                result.prefixes[name],
                kind=lock.env(name).for_platform(platform).kind,
                variables=self.variables.get(name, ()),
            )
        log.info("synced %s into %s", ", ".join(self.envs), store.root)

    def _materialise_lock(self, store: Store) -> Path:
        """The lock as a file in the store: it registers the prefixes there as gc roots."""
        path = store.root / "dask" / "locks" / self.lock_digest / LOCK_FILENAME
        try:
            if path.read_text("utf-8") == self.lock_text:
                return path
        except OSError:
            pass
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, self.lock_text)  # workers sharing the store write the same text
        return path

    # -- used by tasks ---------------------------------------------------------------------------

    def environment(self, env: str) -> Environment:
        """The env, with its env worker running (launched on first use, relaunched if dead)."""
        if self._error is not None:
            raise copy.copy(self._error)  # tasks on several threads may raise it at once
        environment = self._synced.get(env)
        if environment is None:
            raise EnvNotFoundError(
                f"environment {env!r} was not synced on Dask worker {self._worker_label}.",
                hint="pass it in CemaPlugin(envs=...).",
            )
        # launch() is idempotent (and relaunches a dead worker); launched() is the cheap check
        return environment if environment.launched() else environment.launch()

    def module_file(self, digest: str, filename: str, source: bytes) -> str:
        """The path of a shipped module's source on this worker, written once per content."""
        known = self._modules.get(digest)
        if known is not None:
            return known
        with self._module_lock:
            assert self._module_dir is not None
            path = self._module_dir / digest / filename
            if not path.is_file():
                path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write(path, source, durable=False)
            self._modules[digest] = str(path)
            return str(path)


def _store_path(store: str | os.PathLike[str] | None) -> str | None:
    """A relative store is relative to the client's cwd; ``~`` stays for each node to expand."""
    if store is None:
        return None
    text = os.fspath(store)
    if text.startswith("~") or Path(text).is_absolute():
        return text
    return str(Path(text).absolute())


def _relative_channels(lock: Lockfile, envs: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """The local channels of ``envs`` the lock names relative to its folder: (as written, the
    folder they resolve to against the lock's origin on the client)."""
    if lock.path is None:
        return ()
    base = lock.path.parent
    found: dict[str, str] = {}
    for env in envs:
        for content in lock.env(env).platforms.values():
            for channel in {r.channel for r in content.conda if r.channel.startswith("file://")}:
                written = to_portable(channel, base)
                if written.startswith(("./", "../")):
                    found[written] = str(file_url_path(channel))
    return tuple(sorted(found.items()))


def _unseen_channels(
    missing: Sequence[tuple[str, str]], origin: str | None, exc: CemaError
) -> EngineError:
    """The sync failed and a lock-relative local channel is not on this worker: say so."""
    named = ", ".join(f"{written!r} ({folder})" for written, folder in missing)
    return EngineError(
        f"the lock names local channel {named} relative to its folder {origin} on the client, "
        f"and this worker cannot see that folder ({exc.message}).",
        hint="Dask workers get the lock's text, not its folder: put the channel on a shared "
        "filesystem mounted at the same path on every node, or serve it over HTTP.",
    )


def _on_worker(exc: BaseException, worker: str) -> BaseException:
    """``exc`` with the Dask worker named in its message (a Cema error keeps its type)."""
    if isinstance(exc, CemaError):
        named = copy.copy(exc)
        named.message = f"on Dask worker {worker}: {exc.message}"
        named.args = (named.message,)
        return named
    return EngineError(
        f"on Dask worker {worker}: syncing the environments failed ({type(exc).__name__}: {exc}).",
        hint="see the worker's log for the traceback.",
    )


def _plugins_with(worker: DaskWorker, env: str) -> list[CemaPlugin]:
    plugins: Iterable[Any] = worker.plugins.values()
    return [p for p in plugins if isinstance(p, CemaPlugin) and env in p.envs]


class EnvFunction:
    """``module.function`` run inside env ``env`` from a Dask task; see ``in_env``."""

    __slots__ = ("__name__", "digest", "env", "filename", "function", "module", "source", "timeout")

    def __init__(
        self,
        env: str,
        module: str | os.PathLike[str],
        function: str,
        *,
        timeout: float | None = None,
    ) -> None:
        self.env = env
        self.function = function
        self.timeout = timeout
        self.__name__ = function  # Dask names task keys after it
        text = os.fspath(module)
        if text.endswith(".py"):
            self.source: bytes | None = Path(text).read_bytes()
            self.digest = xxhash.xxh3_128_hexdigest(self.source)[:24]
            self.filename = Path(text).name
            self.module = text
        else:
            self.source = None
            self.digest = ""
            self.filename = ""
            self.module = text

    def __getstate__(self) -> tuple[Any, ...]:
        return tuple(getattr(self, s) for s in self.__slots__)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        for slot, value in zip(self.__slots__, state, strict=True):
            setattr(self, slot, value)

    def __dask_tokenize__(self) -> tuple[str, ...]:
        return (self.env, self.module, self.function, self.digest, repr(self.timeout))

    def __repr__(self) -> str:
        return f"in_env({self.env!r}, {self.module!r}, {self.function!r})"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the function in the env's worker on this Dask worker and return its result."""
        try:
            worker = get_worker()
        except ValueError:
            raise CemaError(
                f"{self!r} runs inside Dask tasks: call it through client.submit or client.map.",
                hint="register CemaPlugin(lock) on the client first.",
            ) from None
        plugins = _plugins_with(worker, self.env)
        if not plugins:
            raise EnvNotFoundError(
                f"no CemaPlugin on Dask worker {worker.name} ({worker.address}) provides "
                f"environment {self.env!r}.",
                hint="register it with client.register_plugin(CemaPlugin(lock, envs=[...])).",
            )
        plugin = plugins[-1]  # the latest registration wins
        module = self.module
        if self.source is not None:
            module = plugin.module_file(self.digest, self.filename, self.source)
        environment = plugin.environment(self.env)
        return environment.execute(module, self.function, args, kwargs, timeout=self.timeout)


def in_env(
    env: str,
    module: str | os.PathLike[str],
    function: str,
    *,
    timeout: float | None = None,
) -> EnvFunction:
    """A picklable callable running ``module.function(*args, **kwargs)`` in env ``env``.

    Use it as a task function: ``client.map(in_env("tool", "plug.py", "f"), xs)``. On each Dask
    worker one env worker per env is launched on first use and reused by later tasks; a crashed
    one fails the task that was running and is relaunched for the next. ``module`` is a ``.py``
    file, whose source travels with the callable (cached by content hash on each worker), or a
    module name importable in the env. ``timeout`` (seconds) bounds each call; a call over it
    stops the env worker.
    """
    return EnvFunction(env, module, function, timeout=timeout)
