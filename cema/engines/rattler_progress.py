"""rattler's install callbacks (its ``InstallerReporter``, by method name) as Reporter events."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from cema.engines.builder import NullReporter, Reporter

log = logging.getLogger(__name__)


def _guarded(method: Callable[..., Any]) -> Callable[..., Any]:
    """A callback that never raises into rattler (a broken progress display must not stop an
    install): the error is logged and the callback returns its neutral token."""

    def call(self: InstallEvents, *args: Any) -> Any:
        try:
            return method(self, *args)
        except Exception:
            log.debug("progress callback %s failed", method.__name__, exc_info=True)
            return 0

    call.__name__ = method.__name__
    call.__doc__ = method.__doc__
    return call


class InstallEvents:
    """Passed as ``rattler.install(reporter=...)``: rattler calls these from its own threads.

    rattler's tokens are ours to choose: the operation index is the token of a cache entry and
    of its download, so every byte count is known by its package's name.
    """

    def __init__(self, reporter: Reporter, *, label: str) -> None:
        self._reporter = reporter
        self._label = label
        self._names: dict[int, str] = {}
        self._lock = threading.Lock()

    @_guarded
    def on_transaction_start(self, total_operations: int) -> None:
        """The linking phase: one step per package."""
        self._reporter.start(total=total_operations, label=self._label)

    @_guarded
    def on_populate_cache_start(self, operation: int, package_name: str) -> int:
        """Remember the package of ``operation``."""
        with self._lock:
            self._names[operation] = package_name
        return operation

    @_guarded
    def on_download_start(self, cache_entry: int) -> int:
        """A download begins: its token is the operation's."""
        return cache_entry

    @_guarded
    def on_download_progress(self, download_idx: int, progress: int, total: int | None) -> None:
        """Bytes in."""
        self._reporter.downloading(package=self._name(download_idx), done=progress, total=total)

    @_guarded
    def on_download_completed(self, download_idx: int) -> None:
        """A download is over."""
        self._reporter.downloaded(package=self._name(download_idx))

    @_guarded
    def on_link_start(self, operation: int, package_name: str) -> int:
        """Linking a package begins."""
        with self._lock:
            self._names[operation] = package_name
        return operation

    @_guarded
    def on_link_complete(self, index: int) -> None:
        """A package is linked: one step."""
        self._reporter.advance(step=self._name(index))

    # the rest of rattler's callbacks: nothing to show
    def on_transaction_operation_start(self, operation: int) -> None:
        """Ignored."""

    def on_validate_start(self, cache_entry: int) -> int:
        """Ignored."""
        return cache_entry

    def on_validate_complete(self, validate_idx: int) -> None:
        """Ignored."""

    def on_populate_cache_complete(self, cache_entry: int) -> None:
        """Ignored."""

    def on_unlink_start(self, operation: int, package_name: str) -> int:
        """Ignored (a fresh staging prefix has nothing to unlink)."""
        return operation

    def on_unlink_complete(self, index: int) -> None:
        """Ignored."""

    def on_transaction_operation_complete(self, operation: int) -> None:
        """Ignored."""

    def on_transaction_complete(self) -> None:
        """Ignored: the builder ends the phase, also when the transaction fails."""

    def on_post_link_start(self, package_name: str, script_path: str) -> int:
        """Ignored (link scripts do not run)."""
        return 0

    def on_post_link_complete(self, index: int, success: bool) -> None:
        """Ignored."""

    def on_pre_unlink_start(self, package_name: str, script_path: str) -> int:
        """Ignored."""
        return 0

    def on_pre_unlink_complete(self, index: int, success: bool) -> None:
        """Ignored."""

    def _name(self, token: int) -> str:
        with self._lock:
            return self._names.get(token, "?")


def install_reporter(reporter: Reporter, *, label: str) -> InstallEvents | None:
    """What to pass as ``rattler.install(reporter=...)``: None when nothing is shown (a plain
    ``NullReporter``), so that rattler calls back into Python for nothing."""
    return None if type(reporter) is NullReporter else InstallEvents(reporter, label=label)


__all__ = ["InstallEvents", "install_reporter"]
