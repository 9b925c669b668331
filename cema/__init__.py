"""Cema: declarative, locked, content-addressed conda and pip environments, and workers in them."""

from __future__ import annotations

__version__ = "0.1.0"

from cema.environment import Environment
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
from cema.manager import EnvironmentManager
from cema.project import Project
from cema.spec import EnvSpec, ProjectSpec, load_project
from cema.store import Store

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
