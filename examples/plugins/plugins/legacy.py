"""A plugin written against attrs 21 (``attr.s``/``attr.ib``)."""

import attr


@attr.s
class Point:
    x = attr.ib()
    y = attr.ib()


def describe(x, y):
    return {"attrs": attr.__version__, "point": repr(Point(x, y))}
