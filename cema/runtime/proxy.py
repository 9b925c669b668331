"""``ModuleProxy``: a module in a worker whose attributes are functions that call into it."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from cema.runtime.worker import Worker, module_key


class RemoteFunction:
    """A function of a module in a worker; calling it runs it there.

    ``f.with_timeout(5)(x)`` calls with a 5 s timeout (``WorkerTimeoutError`` when exceeded,
    which stops the worker: see ``Worker``). Keyword arguments all go to the remote function.
    """

    __slots__ = ("__name__", "_module", "_timeout", "_worker")

    def __init__(self, worker: Worker, module: str, name: str, timeout: float | None) -> None:
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
        worker: Worker,
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
