"""The micromamba engine: its binary, its builder and the plan scripts it runs."""

from cema.engines.micromamba.binary import (
    download_micromamba,
    find_micromamba,
    micromamba_version,
    stored_binary,
)
from cema.engines.micromamba.engine import MicromambaEngine

__all__ = [
    "MicromambaEngine",
    "download_micromamba",
    "find_micromamba",
    "micromamba_version",
    "stored_binary",
]
