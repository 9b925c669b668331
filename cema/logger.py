"""The original API's logger: ``logger``, ``getLogger``, ``setLogLevel``, ``attachLogHandler``."""

from __future__ import annotations

import logging
from collections.abc import Callable

__all__ = ["attachLogHandler", "getLogger", "logger", "setLogLevel"]

#: the marker of the console handler the original API installs (once per process)
_CONSOLE = "cema-original-api-console"


def getLogger() -> logging.Logger:
    """The ``cema`` logger: Cema's messages and every line a worker prints (INFO)."""
    return logging.getLogger("cema")


logger = getLogger()


def setLogLevel(level: int | str) -> None:
    """Show the ``cema`` messages at ``level`` and above."""
    logger.setLevel(level)


class _CallbackHandler(logging.Handler):
    def __init__(self, log: Callable[[str], None]) -> None:
        super().__init__()
        self._log = log

    def emit(self, record: logging.LogRecord) -> None:
        self._log(self.format(record))


def attachLogHandler(log: Callable[[str], None], logLevel: int = logging.INFO) -> None:
    """Send each ``cema`` message, formatted, to ``log`` (a GUI's console, say)."""
    logger.setLevel(logLevel)
    handler = _CallbackHandler(log)
    handler.setLevel(logLevel)
    logger.addHandler(handler)


def use_console() -> None:
    """As the original did: ``cema`` messages at INFO reach the console unless told otherwise."""
    if any(h.get_name() == _CONSOLE for h in logger.handlers):
        return
    handler = logging.StreamHandler()
    handler.set_name(_CONSOLE)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
