"""``ModuleProxy``: a module in a worker whose attributes are functions that call into it."""

# Imports point one way: worker.py imports this module; a proxy knows only the ``Caller`` it is
# given (a ``Worker``, in practice), never the class.

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol


class Caller(Protocol):
    """What a proxy needs of its worker."""

    name: str

    def call_resolved(
        self,
        key: str,
        function: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        timeout: float | None,
    ) -> Any: ...


def module_key(module: str | os.PathLike[str]) -> str:
    """How the worker knows a module: a resolved absolute path for files, else the name.

    A relative path is resolved against the host's working directory.
    """
    text = os.fspath(module)
    if text.endswith(".py") or os.sep in text or (os.altsep is not None and os.altsep in text):
        if Path(text).is_absolute():
            return _resolved(text)  # half of a tiny call's cost otherwise: cache it
        return str(Path(text).resolve())
    return text


@functools.lru_cache(maxsize=1024)
def _resolved(path: str) -> str:
    return str(Path(path).resolve())


class RemoteFunction:
    """A function of a module in a worker; calling it runs it there.

    ``f.with_timeout(5)(x)`` calls with a 5 s timeout (``WorkerTimeoutError`` when exceeded,
    which stops the worker: see ``Worker``). Keyword arguments all go to the remote function.
    """

    __slots__ = ("__name__", "_module", "_timeout", "_worker")

    def __init__(self, worker: Caller, module: str, name: str, timeout: float | None) -> None:
        self._worker = worker
        self._module = module
        self.__name__ = name
        self._timeout = timeout

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._worker.call_resolved(
            self._module, self.__name__, args, kwargs, timeout=self._timeout
        )

    def with_timeout(self, seconds: float | None) -> RemoteFunction:
        """This function with a per-call timeout in seconds (``None``: wait as long as it runs)."""
        return RemoteFunction(self._worker, self._module, self.__name__, seconds)

    def __repr__(self) -> str:
        return f"<remote function {self.__name__} of {self._module!r} in {self._worker.name!r}>"


class ModuleProxy:
    """A module imported in a worker: ``proxy.f(x)`` runs ``f(x)`` there.

    Its functions were listed by the worker (the module is never imported in the host); ``dir()``
    shows them, and an unknown name raises ``AttributeError`` that lists them. ``timeout`` is the
    default per-call timeout; ``proxy.f.with_timeout(s)`` overrides it for one function.
    """

    __slots__ = ("_functions", "_module", "_timeout", "_worker")

    def __init__(
        self,
        worker: Caller,
        module: str | os.PathLike[str],
        functions: Sequence[str],
        *,
        timeout: float | None = None,
    ) -> None:
        self._worker = worker
        self._module = module_key(module)  # resolved once: calls skip the path lookup
        self._functions = tuple(functions)
        self._timeout = timeout

    def __getattr__(self, name: str) -> RemoteFunction:
        if name.startswith("__") or name not in self._functions:
            available = ", ".join(self._functions) or "none"
            raise AttributeError(
                f"module {self._module!r} in worker {self._worker.name!r} has no "
                f"function {name!r}; available: {available}",
                name=name,
                obj=self,
            )
        return RemoteFunction(self._worker, self._module, name, self._timeout)

    def __dir__(self) -> list[str]:
        return sorted(self._functions)

    def __repr__(self) -> str:
        return f"<module {self._module!r} in worker {self._worker.name!r}>"
