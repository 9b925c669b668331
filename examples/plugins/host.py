"""One host process calling two plugins that need conflicting versions of attrs."""

from pathlib import Path

from cema import Environment

here = Path(__file__).parent

legacy = Environment.from_spec(here / "cema.yaml", name="legacy-plugin")
modern = Environment.from_spec(here / "cema.yaml", name="modern-plugin")

with legacy.launch(), modern.launch():
    print("legacy:", legacy.import_module(str(here / "plugins" / "legacy.py")).describe(1, 2))
    print("modern:", modern.import_module(str(here / "plugins" / "modern.py")).describe(3, 4))
