"""``python -m cema.engines.micromamba activation-cache PREFIX KIND``, run by scripts."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path


def _hook(argv: Sequence[str]) -> int:
    """Steps a script asks of Cema: ``activation-cache PREFIX KIND``."""
    if len(argv) == 3 and argv[0] == "activation-cache":
        from cema.activation import write_activation_cache

        write_activation_cache(Path(argv[1]), argv[2])
        return 0
    sys.stderr.write("usage: python -m cema.engines.micromamba activation-cache PREFIX KIND\n")
    return 2


sys.exit(_hook(sys.argv[1:]))
