"""Functions the hostile tests run in a worker (loaded there by path)."""

import re
import sys


def echo(value):
    return value


def leave(how):
    """Raise what ends a plain Python program."""
    if how == "exit":
        sys.exit(5)
    if how == "interrupt":
        raise KeyboardInterrupt
    raise GeneratorExit


def hold_the_gil(marker):
    """Say (by creating ``marker``) that the call runs, then hold the GIL in C for hours."""
    open(marker, "w").close()
    # catastrophic backtracking: about 2**40 steps inside the regex engine, which never
    # releases the GIL, so no other thread of this process runs meanwhile
    return re.match(r"(a+)+$", "a" * 40 + "b")


def touch_and_sleep(marker, seconds):
    """Say (by creating ``marker``) that the call runs, then sleep (the GIL is free)."""
    import time

    open(marker, "w").close()
    time.sleep(seconds)
    return seconds
