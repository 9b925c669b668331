"""A plugin for the worker runtime tests: plain functions, hostile ones, and big data."""

import os
import subprocess
import sys
import threading
import time


class PluginError(Exception):
    """An exception class that exists only in the worker."""


class Point:
    """A class the host cannot import (this file is loaded under a private module name)."""

    def __init__(self, x):
        self.x = x


def echo(value):
    return value


def add(a, b=1, *, scale=1):
    return (a + b) * scale


def raise_value_error(message):
    raise ValueError(message)


def raise_plugin_error(message):
    raise PluginError(message)


def make_point(x):
    return Point(x)


def unpicklable(kind):
    if kind == "lambda":
        return lambda: None
    return threading.Lock()


def say(text):
    print("out: " + text)
    sys.stderr.write("err: " + text + "\n")
    return len(text)


def exit_hard(code):
    sys.stderr.write(f"about to exit with {code}\n")
    sys.stderr.flush()
    os._exit(code)


def segfault():
    import ctypes

    return ctypes.string_at(0)


def spin():
    while True:
        pass


def sleep(seconds):
    time.sleep(seconds)
    return seconds


def spawn_sleeper():
    """Start a grandchild process and return its pid (close() must kill it too)."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]).pid


def environ(name):
    return os.environ.get(name)


def python_version():
    return "{}.{}".format(*sys.version_info[:2])


def array_sum(array):
    return float(array.sum())


def array_double(array):
    return array * 2


def array_fail(array):
    raise RuntimeError(f"failed on an array of {array.nbytes} bytes")


def touch_and_sleep(path, seconds):
    """Say (by creating ``path``) that the call runs, then take ``seconds``."""
    open(path, "w").close()
    time.sleep(seconds)
    return seconds


def buffer_info(buffer):
    """Length and first bytes of a received buffer (no numpy needed)."""
    view = memoryview(buffer)
    return view.nbytes, bytes(view[:4])


def make_buffer(nbytes, fill):
    """A large out-of-band buffer to send back (pickle protocol 5, no numpy needed)."""
    import pickle

    return pickle.PickleBuffer(bytearray([fill]) * nbytes)
