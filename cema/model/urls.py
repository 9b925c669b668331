"""Channel and package URLs: local paths, lock-relative folders, and credential redaction."""

from __future__ import annotations

import functools
import os
import re
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

# --- credentials ----------------------------------------------------------------------------
# Two strengths of one rule. In free text (logs, command lines, scripts) anything that may be a
# secret is hidden: hiding too much is harmless there. A URL written to the lock loses only what
# is surely a credential: ``user:password@`` and an anaconda.org-style token (``/t/<token>/``
# right after the host, long and opaque), so that an ordinary ``/t/`` folder survives.

#: ``scheme://user:password@`` anywhere in a text
URL_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<secret>[^/@\s]+)@", re.IGNORECASE)
#: ``/t/<token>/`` anywhere in a text
URL_TOKEN = re.compile(r"/t/(?P<secret>[^/\s]+)/")
_LOCK_USERINFO = re.compile(r"^(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@]+@", re.IGNORECASE)
_LOCK_TOKEN = re.compile(
    r"^(?P<head>[a-z][a-z0-9+.-]*://[^/]+)/t/[A-Za-z0-9_-]{16,}/", re.IGNORECASE
)


def redact(text: str) -> str:
    """``text`` with every URL credential shown as ``***`` (for logs, errors and scripts)."""
    return URL_TOKEN.sub("/t/***/", URL_USERINFO.sub(r"\g<scheme>***@", text))


def redact_url(url: str) -> str:
    """``url`` without ``user:password@`` and without a ``/t/<token>/`` after the host."""
    return _LOCK_TOKEN.sub(r"\g<head>/", _LOCK_USERINFO.sub(r"\g<scheme>", url))


# --- local channels -------------------------------------------------------------------------


def is_local(channel: str) -> bool:
    """True for a ``file://`` URL or a filesystem path (``./x``, ``/x``, ``~/x``, ``C:\\x``)."""
    if channel.startswith("file://"):
        return True
    if "://" in channel:
        return False
    return channel.startswith((".", "/", "~")) or re.match(r"^[A-Za-z]:[\\/]", channel) is not None


def channel_location(channel: str, root: Path) -> str:
    """A channel as the solver takes it: names and URLs as they are, paths made absolute."""
    if channel.startswith("file://") or not is_local(channel):
        return channel
    return str((root / Path(channel).expanduser()).resolve())


def local_folder(location: str) -> Path | None:
    """The folder of a local channel location (from ``channel_location``), else None."""
    folder = Path(location[len("file://") :] if location.startswith("file://") else location)
    is_path = "://" not in location.replace("file://", "", 1) and folder.is_absolute()
    return folder if is_path else None


@functools.lru_cache(maxsize=1024)
def file_url_path(url: str) -> Path:
    """The local path of a ``file://`` URL (``file:///C:/x`` is ``C:/x`` on Windows)."""
    path = unquote(urlparse(url).path)
    if sys.platform == "win32" and re.match(r"^/[A-Za-z]:", path):
        path = path[1:]
    return Path(path)


# --- local channels are written relative to the lock's folder -------------------------------


def to_portable(url: str, base: Path | None) -> str:
    """``url`` as the lock stores it: credentials dropped, local folders relative to ``base``."""
    if not url.startswith("file://"):
        # credentials never land in the lock: the engines take them from the environment
        return redact_url(url)
    if base is None:
        return url
    folder, _, name = url.rpartition("/")
    return _portable_folder(folder, str(base)) + name


@functools.lru_cache(maxsize=1024)
def _portable_folder(folder_url: str, base: str) -> str:
    # both absolute (a file URL's path, the lock's resolved folder): no cwd involved
    try:
        rel = os.path.relpath(file_url_path(folder_url), base).replace(os.sep, "/")
    except ValueError:  # another drive (Windows): no relative path, keep the URL
        return folder_url.rstrip("/") + "/"
    return (rel if rel.startswith("../") or rel == ".." else "./" + rel).rstrip("/") + "/"


def from_portable(url: str, base: Path | None) -> str:
    """The absolute URL of a lock entry (the inverse of ``to_portable`` for local folders)."""
    if base is None or not url.startswith(("./", "../")):
        return url
    folder, _, name = url.rpartition("/")
    return _absolute_folder(folder, str(base)) + name


@functools.lru_cache(maxsize=1024)
def _absolute_folder(folder: str, base: str) -> str:
    # the lock's own path is already resolved: normalising is enough (no symlink lookups)
    return Path(os.path.normpath(Path(base) / folder)).as_uri().rstrip("/") + "/"
