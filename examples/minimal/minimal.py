"""The original minimal example, as written for the first version of the API."""

from pathlib import Path

from cema.manager import EnvironmentManager

here = Path(__file__).parent

environmentManager = EnvironmentManager(here / "micromamba/")
env = environmentManager.create("numpy_env", {"pip": ["numpy==2.2.4"]})
env.launch()
minimal_module = env.importModule(str(here / "minimal_module.py"))
print("numpy in numpy_env:", minimal_module.numpy_version())
print("mean:", minimal_module.process([1, 2, 3, 4]))
env.exit()
