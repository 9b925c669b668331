"""Map a function over a local Dask cluster, inside an env that only the workers have.

    python examples/dask/run.py [--store DIR] [--scheduler ADDRESS]

Without ``--scheduler`` a LocalCluster of two worker processes is started. Without ``--store``
each worker syncs into its node's CEMA_HOME (the user cache dir by default).
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

from distributed import Client, LocalCluster

from cema.dask import CemaPlugin, in_env

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", help="a store every worker can reach (a shared folder)")
    parser.add_argument("--scheduler", help="the address of a running Dask scheduler")
    args = parser.parse_args()

    cluster = None
    if args.scheduler is None:
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None)
    with Client(args.scheduler or cluster) as client:
        # every worker, now and joining later, syncs the locked env (no solve)
        client.register_plugin(CemaPlugin(HERE / "cema.lock", store=args.store))
        speak = in_env("talk", HERE / "talk.py", "speak")
        lines = client.gather(client.map(speak, [f"task {i}" for i in range(8)]))
        print(lines[-1])
        print(f"{len(lines)} tasks ran in the env's interpreter on the workers")
        print("cowsay in this client:", importlib.util.find_spec("cowsay") is not None)
    if cluster is not None:
        cluster.close()


if __name__ == "__main__":
    main()
