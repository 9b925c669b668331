"""The host side of workers: process lifecycle, connection, proxies, shared memory."""

from __future__ import annotations

from cema.runtime.proxy import ModuleProxy, RemoteFunction
from cema.runtime.worker import Worker

__all__ = ["ModuleProxy", "RemoteFunction", "Worker"]
