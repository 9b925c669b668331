"""A plugin written against attrs 24 (``attrs.define``, needs attrs >= 21.3 at least)."""

import os

import attrs


@attrs.define
class Point:
    x: int
    y: int


def describe(x, y):
    return {
        "attrs": attrs.__version__,
        "point": repr(Point(x, y)),
        "greeting": os.environ.get("PLUGIN_GREETING"),
    }
