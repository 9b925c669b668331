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


_BARE = logging.Formatter("%(message)s")


class _CallbackHandler(logging.Handler):
    def __init__(self, log: Callable[[str], None]) -> None:
        super().__init__()
        self._log = log

    def emit(self, record: logging.LogRecord) -> None:
        self._log(self._formatter().format(record))

    def _formatter(self) -> logging.Formatter:
        """As the original: this handler's formatter, else the first ``cema`` handler's, else the
        root logger's first handler's (``basicConfig``'s); the bare message when none has one."""
        if self.formatter is not None:
            return self.formatter
        for handlers in (logger.handlers, logging.getLogger().handlers):
            if handlers and handlers[0].formatter is not None:
                return handlers[0].formatter
        return _BARE


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
    # an application that set up logging (basicConfig) prints the records itself: once
    handler.addFilter(lambda record: not logging.getLogger().handlers)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
