"""``InternalEnvironment``: the original API's main env, where calls run in this process."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from cema._internal.exceptions import ExecutionException
from cema.environment import Environment, _import_locally

if TYPE_CHECKING:
    from cema._internal.command_generator import Commands
    from cema.external_environment import OriginalManager

__all__ = ["InternalEnvironment"]


def import_file(modulePath: str | Path) -> ModuleType:
    """Import ``modulePath``; a missing file is a ``ModuleNotFoundError``, as in the original."""
    path = str(modulePath)
    if path.endswith(".py") and not Path(path).is_file():
        raise ModuleNotFoundError(f"No module named {path!r} (no such file).", name=path)
    return _import_locally(path)


class InternalEnvironment(Environment):
    """The environment Cema runs in (``manager.mainEnvironment``): always launched."""

    def __init__(self, name: Path | str | None, environmentManager: OriginalManager | None) -> None:
        super().__init__("main" if name is None else str(name), None, kind="main")
        #: the main conda prefix given to the manager, or None
        self.path = None if name is None else Path(name)
        self.environmentManager = environmentManager

    def launch(  # type: ignore[override]
        self,
        additionalActivateCommands: Commands | None = None,
        logOutputInThread: bool = True,
    ) -> None:
        """Nothing to start: the main environment is this process."""

    def importModule(self, modulePath: str | Path) -> ModuleType:
        """The module itself, imported here."""
        return import_file(modulePath)

    import_module = importModule  # type: ignore[assignment]

    def execute(  # type: ignore[override]
        self,
        modulePath: str | Path,
        function: str,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> Any:
        """Run ``modulePath.function(*args, **kwargs)`` here."""
        module = import_file(modulePath)
        target = getattr(module, function, None)
        if not callable(target):
            message = f"Module {modulePath} has no function {function}."
            raise ExecutionException({"exception": message, "traceback": []})
        return target(*args, **dict(kwargs or {}))

    def install(  # type: ignore[override]
        self, dependencies: Mapping[str, Any], additionalInstallCommands: Commands | None = None
    ) -> list[str]:
        """Install ``dependencies`` into the main conda env (``mainCondaEnvironmentPath``, conda
        and pip ones, through the manager's micromamba), or, with no such env, the pip ones into
        this Python environment."""
        if self.environmentManager is None:
            raise RuntimeError("this main environment belongs to no EnvironmentManager.")
        name = None if self.path is None else self.name
        return self.environmentManager.install(name, dependencies, additionalInstallCommands)

    def exit(self) -> None:
        """Nothing runs apart; forgotten by the manager."""
        if self.environmentManager is not None:
            self.environmentManager._forget(self)
