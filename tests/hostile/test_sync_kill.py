"""``kill -9`` of ``cema sync`` at chosen points, then ``cema sync`` again: it converges.

Three builds (cold: an empty package cache; warm: the packages already extracted; a pip-only
venv), each killed at points the test can observe (a staging folder made, a package extracted,
files linked, the prefix renamed into ``envs/``, its activation running, uv's ``pip install``
running, the receipt written) and after delays drawn with a fixed seed. Two ways to kill: the
whole process group, and the ``cema`` process alone (its children must then die with it: the
Linux parent-death signal). After each kill:

- nothing is marked ready that is not complete: every prefix with a receipt passes the full
  check (``verify_prefix(full=True)``: every file of every record present with its sha256);
- no process of the killed sync survives (uv, the activation shell...), polled in ``/proc``;
- the next ``cema sync`` succeeds, leaves no prefix without a receipt under ``envs/`` and no
  staging, and ``cema verify --full`` is clean.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import cema
from cema.store import RECEIPT_NAME
from cema.verify import verify_prefix
from tests.channel_builder import GATE_DIR, build_local_channel, bulk_package
from tests.conftest import CLI_TIMEOUT_S, cema_argv, cema_environ

pytestmark = [
    pytest.mark.hostile,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc, parent-death signal"),
]

#: files of the bulk package: linking them into staging is a window the test can hit
BULK_FILES = 1500
#: how many times a trial is started again when the sync ran past its kill point unseen
WINDOW_TRIES = 3
#: how long every process of a killed sync gets to be gone
DEATH_S = 5.0
#: how long a sync may take to reach a kill point
POINT_S = 60.0
SEED = 13
TAG = "CEMA_HOSTILE_KILL_TAG"
PYTHON = ".".join(map(str, sys.version_info[:2]))


# --- the builds ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def channel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_local_channel(
        tmp_path_factory.mktemp("kill-channel"), extra=[bulk_package(files=BULK_FILES)]
    )


def _yaml(kind: str, channel: Path) -> str:
    if kind == "venv":
        return (
            "version: 1\nenvironments:\n  env:\n    kind: venv\n"
            f'    python: "{PYTHON}"\n    pip: ["six==1.16.0"]\n'
        )
    return (
        f'version: 1\nchannels: ["{channel}"]\nenvironments:\n  env:\n'
        '    conda: [python, "cemademo=1.0", cemahello, cemagate, cemabulk]\n'
    )


@dataclass(frozen=True, slots=True)
class Build:
    """A locked project (one env, ``env``) and, for warm builds, a filled package cache."""

    folder: Path
    home: Path  #: ``HOME`` for its syncs (the gate folder of ``cemagate`` lives there)
    package_cache: Path | None = None


def _cli(
    folder: Path, store_root: Path, home: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        cema_argv(*args),
        cwd=folder,
        env=cema_environ(store_root, {"HOME": str(home)}),
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )
    assert proc.returncode == 0, f"`cema {' '.join(args)}`:\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def builds(channel: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Build]:
    made: dict[str, Build] = {}

    def get(kind: str) -> Build:
        if kind in made:
            return made[kind]
        root = tmp_path_factory.mktemp(f"kill-{kind}")
        folder = root / "project"
        folder.mkdir()
        (folder / "cema.yaml").write_text(_yaml(kind, channel))
        # the venv build's uv finds its interpreter and wheels in the real user's caches
        home = Path.home() if kind == "venv" else root / "home"
        if kind != "venv":
            (home / GATE_DIR).mkdir(parents=True)
        _cli(folder, root / "lock-store", home, "lock")
        cache = None
        if kind == "warm":
            warm = root / "warm-store"
            _cli(folder, warm, home, "sync", "--frozen")
            cache = warm / "pkgs"
        made[kind] = Build(folder=folder, home=home, package_cache=cache)
        return made[kind]

    return get


# --- processes in /proc -------------------------------------------------------------------------


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, parent pid, start time) of ``pid``, or None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return fields[0], int(fields[1]), int(fields[19])


def _pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _descendants(root: int) -> dict[int, int]:
    """The processes below ``root`` now: pid → start time (to tell a reused pid apart)."""
    children: dict[int, list[tuple[int, int]]] = {}
    for pid in _pids():
        st = _stat(pid)
        if st is not None:
            children.setdefault(st[1], []).append((pid, st[2]))
    out: dict[int, int] = {}
    todo = [root]
    while todo:
        for pid, start in children.get(todo.pop(), []):
            out[pid] = start
            todo.append(pid)
    return out


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError:
        return b""


def _cmdline(pid: int) -> list[str]:
    return [a.decode(errors="replace") for a in _read(f"/proc/{pid}/cmdline").split(b"\0") if a]


def _survivors(known: dict[int, int], tag: str, store_root: Path) -> list[str]:
    """Live (not zombie) processes of a killed sync: known before the kill, or carrying its
    tag in their environment, or naming its store on their command line."""
    mark = f"{TAG}={tag}".encode()
    out = []
    for pid in _pids():
        st = _stat(pid)
        if st is None or st[0] == "Z" or pid == os.getpid():
            continue
        ours = known.get(pid) == st[2]
        ours = ours or mark in _read(f"/proc/{pid}/environ").split(b"\0")
        ours = ours or any(str(store_root) in a for a in _cmdline(pid))
        if ours:
            out.append(f"{pid} {' '.join(_cmdline(pid))[:200]}")
    return out


@contextlib.contextmanager
def _reaping(tag: str, store_root: Path) -> Iterator[None]:
    """Whatever of a killed sync still runs when the trial ends is killed (failed trials)."""
    try:
        yield
    finally:
        for line in _survivors({}, tag, store_root):
            with contextlib.suppress(OSError):
                os.kill(int(line.split()[0]), signal.SIGKILL)


# --- kill points --------------------------------------------------------------------------------


@dataclass(slots=True)
class Run:
    proc: subprocess.Popen[bytes]
    store: cema.Store
    home: Path


def _entries(folder: Path) -> list[Path]:
    try:
        return list(folder.iterdir())
    except OSError:
        return []


def _any_staging(run: Run, inside: str = "") -> bool:
    return any(not inside or (e / inside).exists() for e in _entries(run.store.root / "staging"))


def _extracted(run: Run) -> bool:
    return any((e / "info" / "paths.json").is_file() for e in _entries(run.store.package_cache))


def _renamed(run: Run) -> bool:
    return any(not (e / RECEIPT_NAME).exists() for e in _entries(run.store.envs_dir))


def _receipt(run: Run) -> bool:
    return any((e / RECEIPT_NAME).exists() for e in _entries(run.store.envs_dir))


def _gated(run: Run) -> bool:
    return (run.home / GATE_DIR / "waiting").exists()


def _pip_running(run: Run) -> bool:
    for pid in _descendants(run.proc.pid):
        argv = _cmdline(pid)
        if "pip" in argv and "install" in argv:
            return True
    return False


POINTS: dict[str, Callable[[Run], bool]] = {
    "staging": _any_staging,
    "extracted": _extracted,
    "linking": lambda run: _any_staging(run, "share/cemabulk"),
    "venv-made": lambda run: _any_staging(run, "pyvenv.cfg"),
    "renamed": _renamed,
    "activation": _gated,
    "pip": _pip_running,
    "receipt": _receipt,
}

_rng = random.Random(SEED)


def _marks(kind: str, point: str, how: str) -> list[pytest.MarkDecorator]:
    return [pytest.mark.network] if kind == "venv" else []


def _trials(kind: str, points: list[tuple[str, str]]) -> list[tuple[str, str, str]]:
    """``(kind, point, how)``; two more points per build: delays after start, seeded."""
    delays = [(f"delay-{_rng.uniform(0.05, 1.2):.2f}", how) for how in ("group", "process")]
    return [(kind, point, how) for point, how in [*points, *delays]]


TRIALS = [
    *_trials(
        "cold",
        [
            ("staging", "group"),
            ("extracted", "process"),
            ("linking", "group"),
            ("renamed", "process"),
            ("activation", "group"),
            ("activation", "process"),
            ("receipt", "group"),
        ],
    ),
    *_trials(
        "warm",
        [
            ("staging", "process"),
            ("linking", "group"),
            ("renamed", "group"),
            ("activation", "process"),
            ("receipt", "process"),
        ],
    ),
    *_trials(
        "venv",
        [
            ("staging", "group"),
            ("staging", "process"),
            ("venv-made", "process"),
            ("renamed", "group"),
            ("pip", "group"),
            ("pip", "process"),
            ("receipt", "process"),
        ],
    ),
]


def _reach(run: Run, point: str) -> bool:
    """Wait for ``point`` (spinning: some windows are short); False if the sync ended first."""
    if point.startswith("delay-"):
        with contextlib.suppress(subprocess.TimeoutExpired):
            run.proc.wait(timeout=float(point.removeprefix("delay-")))
        return run.proc.poll() is None
    condition = POINTS[point]
    deadline = time.monotonic() + POINT_S
    while not condition(run):
        if run.proc.poll() is not None:
            return False
        if time.monotonic() > deadline:
            pytest.fail(f"the sync did not reach {point!r} within {POINT_S:.0f} s")
        os.sched_yield()
    return run.proc.poll() is None


def _assert_ready_means_whole(store: cema.Store, when: str) -> None:
    for address, receipt in store.inventory().items():
        problems = verify_prefix(store.prefix(address), full=True)
        assert problems == [], f"{when}: ready prefix {address} is not whole: {problems[:5]}"
        assert receipt.address == address


@pytest.mark.parametrize(
    ("kind", "point", "how"),
    [pytest.param(*t, id="-".join(t), marks=_marks(*t)) for t in TRIALS],
)
def test_kill_sync_then_sync_again(
    kind: str, point: str, how: str, builds: Callable[[str], Build], tmp_path: Path
) -> None:
    build = builds(kind)
    store = cema.Store(tmp_path / "store")
    home = build.home
    if point == "activation":
        home = tmp_path / "home"
        (home / GATE_DIR).mkdir(parents=True)
        (home / GATE_DIR / "hold").touch()
    tag = uuid.uuid4().hex
    log = tmp_path / "killed.log"
    with _reaping(tag, store.root):
        # a short window (a venv's staging lasts as long as `uv venv`) can be missed by the
        # watcher on a loaded machine: then the trial starts again from an empty store
        for _ in range(WINDOW_TRIES):
            shutil.rmtree(store.root, ignore_errors=True)
            if build.package_cache is not None:
                shutil.copytree(build.package_cache, store.package_cache, symlinks=True)
            with log.open("wb") as err:
                proc = subprocess.Popen(
                    cema_argv("-vv", "sync", "--frozen"),
                    cwd=build.folder,
                    env=cema_environ(store.root, {"HOME": str(home), TAG: tag}),
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                    start_new_session=True,  # its own group: killpg reaches what shares it
                )
                run = Run(proc=proc, store=store, home=home)
                try:
                    alive = _reach(run, point)
                    known = _descendants(proc.pid)
                    if how == "group":
                        with contextlib.suppress(ProcessLookupError):
                            os.killpg(proc.pid, signal.SIGKILL)
                    else:
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=30)
                finally:
                    if proc.poll() is None:
                        os.killpg(proc.pid, signal.SIGKILL)
                        proc.wait()
            if alive or point.startswith("delay-") or point == "receipt":
                break
        if not point.startswith("delay-") and point != "receipt":
            assert alive, (
                f"the sync ended before it could be killed at {point!r} ({WINDOW_TRIES} tries):"
                f"\n{log.read_text()}"
            )
        if alive:
            assert proc.returncode == -signal.SIGKILL
        # its children die with it, whichever way it was killed
        deadline = time.monotonic() + DEATH_S
        while survivors := _survivors(known, tag, store.root):
            if time.monotonic() > deadline:
                break
            time.sleep(0.01)
        if point == "activation":
            (home / GATE_DIR / "hold").unlink()  # a surviving gate lets go
        _assert_ready_means_whole(store, f"after the kill at {point!r}")

        again = _cli(build.folder, store.root, build.home, "-v", "sync", "--frozen")
    _assert_ready_means_whole(store, "after the converging sync")
    prefix = cema.Project.load(build.folder, store=store).prefix("env")
    assert sorted(store.envs_dir.iterdir()) == [prefix], "a prefix without its receipt is left"
    assert (prefix / RECEIPT_NAME).is_file()
    assert _entries(store.root / "staging") == [], again.stderr
    verified = _cli(build.folder, store.root, build.home, "verify", "--full")
    assert "env: ok" in verified.stdout
    assert (
        _cli(build.folder, store.root, build.home, "sync", "--frozen")
        .stdout.strip()
        .endswith("up to date.")
    )
    assert survivors == [], f"processes of the killed sync still run ({how}): {survivors}"
