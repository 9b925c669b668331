"""``python -m cema``: the same as the ``cema`` command."""

from cema.cli import entry

entry()
