"""Cema: declarative, locked, content-addressed conda and pip environments, and workers in them."""

# Lazy: `import cema` costs next to nothing, and each name imports its module on first use
# (PEP 562), so `cema --version` and `cema --help` load no engine, YAML or schema code.

from __future__ import annotations

from cema._version import __version__

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy knows the name)
if TYPE_CHECKING:
    from typing import Any

    from cema.environment import Environment
    from cema.environment_manager import EnvironmentManager
    from cema.errors import (
        CemaError,
        CommandFailedError,
        EngineError,
        EngineUnavailableError,
        EnvBusyError,
        EnvError,
        EnvNotFoundError,
        LockError,
        ProtocolError,
        RemoteError,
        SolveError,
        SpecError,
        StaleLockError,
        WorkerCrashedError,
        WorkerError,
        WorkerStartError,
        WorkerTimeoutError,
    )
    from cema.external_environment import ExternalEnvironment
    from cema.internal_environment import InternalEnvironment
    from cema.model.spec import EnvSpec, ProjectSpec, load_project
    from cema.project import Project
    from cema.store import Store

_ERRORS = (
    "CemaError",
    "CommandFailedError",
    "EngineError",
    "EngineUnavailableError",
    "EnvBusyError",
    "EnvError",
    "EnvNotFoundError",
    "LockError",
    "ProtocolError",
    "RemoteError",
    "SolveError",
    "SpecError",
    "StaleLockError",
    "WorkerCrashedError",
    "WorkerError",
    "WorkerStartError",
    "WorkerTimeoutError",
)
#: public name → the module that defines it
_WHERE: dict[str, str] = {
    **dict.fromkeys(_ERRORS, "cema.errors"),
    "Environment": "cema.environment",
    "EnvironmentManager": "cema.environment_manager",
    "ExternalEnvironment": "cema.external_environment",
    "InternalEnvironment": "cema.internal_environment",
    "EnvSpec": "cema.model.spec",
    "ProjectSpec": "cema.model.spec",
    "load_project": "cema.model.spec",
    "Project": "cema.project",
    "Store": "cema.store",
}

__all__ = [
    "CemaError",
    "CommandFailedError",
    "EngineError",
    "EngineUnavailableError",
    "EnvBusyError",
    "EnvError",
    "EnvNotFoundError",
    "EnvSpec",
    "Environment",
    "EnvironmentManager",
    "ExternalEnvironment",
    "InternalEnvironment",
    "LockError",
    "Project",
    "ProjectSpec",
    "ProtocolError",
    "RemoteError",
    "SolveError",
    "SpecError",
    "StaleLockError",
    "Store",
    "WorkerCrashedError",
    "WorkerError",
    "WorkerStartError",
    "WorkerTimeoutError",
    "__version__",
    "load_project",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'cema' has no attribute {name!r}")
    value = getattr(__import__(module, fromlist=[name]), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_WHERE})
