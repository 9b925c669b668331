"""The host side of workers: launch, live session, proxies (the wire: cema._internal.protocol)."""

from __future__ import annotations

from cema.runtime.proxy import ModuleProxy, RemoteFunction
from cema.runtime.worker import Worker

__all__ = ["ModuleProxy", "RemoteFunction", "Worker"]
