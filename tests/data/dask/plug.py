"""Functions the Dask tests run inside envs: ``cemademo`` is installed there, not in the host."""

import os


class PluginOnlyError(Exception):
    """An exception class that exists only in this file (the host cannot rebuild it)."""


def double(x):
    """``x * 2`` with what the env says about itself (cemademo version, pid, a spec variable)."""
    import cemademo

    return {
        "value": x * 2,
        "cemademo": cemademo.__version__,
        "pid": os.getpid(),
        "greeting": os.environ.get("CEMA_DASK_GREETING"),
    }


def crash_on(x, bad):
    """Kill the env worker when ``x == bad``; else return ``(x, pid)``."""
    if x == bad:
        os._exit(3)
    return x, os.getpid()


def fail(kind):
    """Raise a builtin exception (``"key"``) or one only this file defines (``"plugin"``)."""
    if kind == "key":
        raise KeyError("no such thing")
    raise PluginOnlyError("only the env knows this class")


def scale(array, factor):
    """``array * factor`` (numpy: the arrays travel through shared memory)."""
    return array * factor
