"""A plugin for the EnvironmentManager tests: reports what the process it runs in sees."""

import os
import sys


def environ(name):
    return os.environ.get(name)


def prefix():
    return sys.prefix


def pid():
    return os.getpid()


def version_of(module):
    return __import__(module).__version__


def read(path):
    with open(path) as fh:
        return fh.read()
