"""Run Ray tasks and an actor inside an env that only the Cema store has.

    python examples/ray/run.py [--store DIR] [--address ADDRESS]

Without ``--address`` ``ray.init()`` starts a local cluster, with the plugin loaded. A cluster
started with ``ray start`` needs ``RAY_RUNTIME_ENV_PLUGINS`` set on every node (see the README).
Without ``--store`` each node syncs into its own CEMA_HOME (the user cache dir by default).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
from pathlib import Path

from cema.ray import PLUGINS_ENV_VAR, in_env, plugin_config, runtime_env

HERE = Path(__file__).resolve().parent

# before ray.init: the cluster it starts loads the ``cema`` runtime_env plugin
os.environ.setdefault(PLUGINS_ENV_VAR, plugin_config())

import ray  # noqa: E402


@ray.remote
def speak(text: str) -> str:
    """Runs in the env's python: cowsay is the env's, not the driver's."""
    import cowsay

    return cowsay.get_output_string(os.environ.get("TALK_CHARACTER", "cow"), text)


@ray.remote
class Speaker:
    """An actor living in the env: its worker process runs the env's python."""

    def say(self, text: str) -> str:
        import cowsay

        return cowsay.get_output_string("cow", text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", help="a store every node can reach (a shared folder)")
    parser.add_argument("--address", help="the address of a running Ray cluster")
    args = parser.parse_args()

    ray.init(address=args.address)
    try:
        # checked here, on the driver: an unknown env or a stale lock fails before submission
        env = runtime_env(HERE / "cema.lock", "talk", store=args.store)
        lines = ray.get([speak.options(runtime_env=env).remote(f"task {i}") for i in range(8)])
        print(lines[-1])
        speaker = Speaker.options(runtime_env=env).remote()  # type: ignore[attr-defined]
        print(ray.get(speaker.say.remote("from an actor")).splitlines()[1])
        # the task stays in the driver's env and calls into the env through Cema's runtime
        hello = in_env("talk", HERE / "talk.py", "speak", lock=HERE / "cema.lock", store=args.store)
        print(ray.get(hello.remote("from in_env")).splitlines()[1])
        print(f"{len(lines)} tasks, an actor and an in_env call ran in env 'talk'")
        print("cowsay in this driver:", importlib.util.find_spec("cowsay") is not None)
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
