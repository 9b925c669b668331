"""The CLI's error boundary and the lock workflow, with a test double for the solver."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

import pytest

from cema.cli import main
from cema.errors import LockError
from cema.model.lock import CondaRecord
from cema.model.lockio import read_lock
from cema.model.spec import load_project
from cema.project import Project


class FakeSolver:
    """Test double for the solver: answers every spec with a record from ``versions``."""

    name = "fake"

    def __init__(self, versions: dict[str, str]) -> None:
        self.versions = versions
        self.solves = 0

    def solve(
        self,
        *,
        specs: Sequence[str],
        channels: Sequence[str],
        platform: str,
        locked: Sequence[CondaRecord] = (),
    ) -> list[CondaRecord]:
        self.solves += 1
        names = sorted(s.split()[0].split("=")[0] for s in specs)
        return [
            CondaRecord(
                name=n,
                version=self.versions[n],
                build="0",
                build_number=0,
                subdir=platform,
                channel="https://example.invalid/ch/",
                url=f"https://example.invalid/ch/{platform}/{n}-{self.versions[n]}-0.conda",
                sha256=f"{abs(hash((n, self.versions[n]))):064x}"[-64:],
            )
            for n in names
        ]

    def install(self, **kwargs: object) -> None:  # pragma: no cover - never built here
        raise AssertionError("the lock workflow must not install")


def project_dir(tmp_path: Path, body: str) -> Path:
    (tmp_path / "cema.yaml").write_text(textwrap.dedent(body))
    return tmp_path


SPEC = """\
version: 1
platforms: [linux-64, osx-arm64]
environments:
  a: {conda: [xz]}
  b: {conda: [zlib]}
"""


def test_relock_keeps_unchanged_envs_and_upgrade_refreshes(tmp_path: Path) -> None:
    folder = project_dir(tmp_path, SPEC)
    engine = FakeSolver({"xz": "1", "zlib": "1"})
    Project(load_project(folder), solver=engine, store=tmp_path / "s").lock()
    assert engine.solves == 4  # two envs x two platforms, from one machine
    first = (folder / "cema.lock").read_text()

    engine.versions = {"xz": "2", "zlib": "2"}
    (folder / "cema.yaml").write_text(SPEC.replace("[zlib]", "[zlib, xz]"))
    engine.versions["xz"] = "2"
    lock = Project(load_project(folder), solver=engine, store=tmp_path / "s").lock()
    # a is unchanged: its records stay as they were, although the channel moved on
    assert lock.envs["a"].platforms["linux-64"].conda[0].version == "1"
    assert {r.version for r in lock.envs["b"].platforms["linux-64"].conda} == {"2"}
    assert first != (folder / "cema.lock").read_text()

    lock = Project(load_project(folder), solver=engine, store=tmp_path / "s").lock(upgrade=["a"])
    assert lock.envs["a"].platforms["linux-64"].conda[0].version == "2"


def test_a_lock_from_an_older_cema_keeps_its_pins_through_cema_lock(tmp_path: Path) -> None:
    folder = project_dir(tmp_path, SPEC)
    engine = FakeSolver({"xz": "1", "zlib": "1"})
    Project(load_project(folder), solver=engine, store=tmp_path / "s").lock()
    path = folder / "cema.lock"
    older = "".join(
        line for line in path.read_text().splitlines(True) if "records-hash" not in line
    )
    path.write_text(older)  # as a Cema before records-hashes wrote it
    with pytest.raises(LockError, match="no records-hash"):
        read_lock(path)  # what sync reads: refused, with the reason
    engine.versions = {"xz": "2", "zlib": "2"}
    lock = Project(load_project(folder), solver=engine, store=tmp_path / "s").lock()
    assert {r.version for e in lock.envs.values() for r in e.platforms["linux-64"].conda} == {"1"}
    assert "records-hash" in path.read_text()
    read_lock(path)  # sound again


def test_removed_env_leaves_the_lock(tmp_path: Path) -> None:
    folder = project_dir(tmp_path, SPEC)
    engine = FakeSolver({"xz": "1", "zlib": "1"})
    Project(load_project(folder), solver=engine, store=tmp_path / "s").lock()
    (folder / "cema.yaml").write_text(SPEC.replace("  b: {conda: [zlib]}\n", ""))
    Project(load_project(folder), solver=engine, store=tmp_path / "s").lock()
    assert set(read_lock(folder / "cema.lock").envs) == {"a"}


def test_lock_check_fails_without_solving(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = project_dir(tmp_path, SPEC)
    Project(
        load_project(folder), solver=FakeSolver({"xz": "1", "zlib": "1"}), store=tmp_path / "s"
    ).lock()
    assert main(["lock", "--check", "--project", str(folder)]) == 0
    (folder / "cema.yaml").write_text(SPEC.replace("[zlib]", "[zlib, bzip2]"))
    assert main(["lock", "--check", "--project", str(folder)]) == 1
    err = capsys.readouterr().err
    assert "error: " in err and "out of date" in err and "changed or new in cema.yaml: b" in err
    assert "hint: run `cema lock`" in err


def test_user_errors_print_error_and_hint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = project_dir(tmp_path, "version: 1\nenvironments:\n  a: {pipp: [six]}\n")
    assert main(["sync", "--project", str(folder)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {folder / 'cema.yaml'}:3, at environments.a.pipp: unknown key")
    assert "hint: did you mean 'pip'?" in err
    assert "Traceback" not in err
    assert not (folder / "cema.lock").exists()


def test_unknown_env_and_missing_lock(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = project_dir(tmp_path, SPEC)
    assert main(["sync", "--frozen", "--project", str(folder)]) == 1
    assert "there is no lock" in capsys.readouterr().err
    assert main(["plan", "-e", "aa", "--project", str(folder)]) == 1
    err = capsys.readouterr().err
    assert "no lock" in err or "no environment named 'aa'" in err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["sync", "--locked", "--frozen"])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2


def test_global_options_before_and_after_the_command(tmp_path: Path) -> None:
    from cema.cli import build_parser

    args = build_parser().parse_args(["--store", "X", "sync"])
    assert args.store == "X"
    args = build_parser().parse_args(["sync", "--store", "Y"])
    assert args.store == "Y"


def test_init_writes_a_valid_spec_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", "--project", str(tmp_path)]) == 0
    load_project(tmp_path / "cema.yaml")
    assert main(["init", "--project", str(tmp_path)]) == 1
    assert "already exists" in capsys.readouterr().err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith("cema ")


def test_every_error_survives_pickling() -> None:
    import pickle

    from cema import errors

    samples = [
        errors.SpecError("bad", file="cema.yaml", line=3, key="environments.a", hint="fix"),
        errors.CommandFailedError("failed:", returncode=2, output_tail="tail", hint="h"),
        errors.WorkerCrashedError("died", exitcode=-11, stderr_tail="segv"),
        errors.RemoteError("boom", remote_type="plug.Err", remote_traceback="tb", hint=None),
        errors.StaleLockError("stale", hint="run cema lock"),
    ]
    for exc in samples:
        again = pickle.loads(pickle.dumps(exc))
        assert type(again) is type(exc)
        assert str(again) == str(exc) and again.hint == exc.hint
        assert again.__dict__ == exc.__dict__


@pytest.mark.parametrize(
    "argv",
    [
        ["sync"],
        ["-q", "sync", "--locked", "-e", "a", "-e", "b"],
        ["--project", "sync", "sync", "--frozen"],  # a value that looks like a command
        ["-p", "x", "--store=s", "-vv", "plan", "--json", "--prune"],
        ["run", "tools", "--", "cowsay", "-q", "hi"],
        ["lock", "--upgrade"],
        ["verify", "--full", "-v"],
        ["gc", "--dry-run"],
        ["--no-progress", "sync", "--json"],
        ["plan", "--frozen", "--json"],
        ["list", "--json"],
        ["lock", "--locked"],
        ["gc", "--dry-run", "--json"],
    ],
)
def test_the_one_command_parser_parses_as_the_whole_parser(argv: list[str]) -> None:
    from cema.cli import _command_of, build_parser

    assert _command_of(argv) is not None
    assert build_parser(_command_of(argv)).parse_args(argv) == build_parser().parse_args(argv)


@pytest.mark.parametrize("argv", [["--help"], ["--proj", "x", "sync"], ["-pv", "x", "sync"], []])
def test_an_unusual_command_line_gets_the_whole_parser(argv: list[str]) -> None:
    from cema.cli import _command_of

    assert _command_of(argv) is None


@pytest.mark.parametrize(
    "argv", [["sync"], ["plan", "--json"], ["lock"], ["--store", "S", "list"], ["sync", "--locked"]]
)
def test_the_one_command_parser_reads_the_environment_as_the_whole_parser(
    argv: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from cema.cli import _command_of, build_parser

    monkeypatch.setenv("CEMA_PROJECT", "P")
    monkeypatch.setenv("CEMA_STORE", "T")
    monkeypatch.setenv("CEMA_FROZEN", "1")
    monkeypatch.setenv("CEMA_NO_PROGRESS", "on")
    assert build_parser(_command_of(argv)).parse_args(argv) == build_parser().parse_args(argv)


def test_environment_variables_are_the_defaults_and_flags_win(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from cema.cli import build_parser

    monkeypatch.setenv("CEMA_PROJECT", "from-env")
    monkeypatch.setenv("CEMA_STORE", "store-env")
    monkeypatch.setenv("CEMA_LOCKED", "1")
    monkeypatch.setenv("CEMA_NO_PROGRESS", "true")
    args = build_parser("sync").parse_args(["sync"])
    assert (args.project, args.store, args.mode, args.no_progress) == (
        "from-env",
        "store-env",
        "locked",
        True,
    )
    args = build_parser("sync").parse_args(["-p", "cli", "sync", "--store", "s", "--frozen"])
    assert (args.project, args.store, args.mode) == ("cli", "s", "frozen")
    assert build_parser("lock").parse_args(["lock"]).check is True  # CEMA_LOCKED: lock --check
    monkeypatch.setenv("CEMA_LOCKED", "0")
    monkeypatch.setenv("CEMA_FROZEN", "yes")
    assert build_parser("plan").parse_args(["plan"]).mode == "frozen"
    assert build_parser("plan").parse_args(["plan", "--locked"]).mode == "locked"
    for name in ("CEMA_LOCKED", "CEMA_FROZEN", "CEMA_PROJECT", "CEMA_STORE", "CEMA_NO_PROGRESS"):
        monkeypatch.delenv(name)
    args = build_parser("plan").parse_args(["plan"])
    assert (args.project, args.store, args.mode, args.no_progress) == (None, None, None, False)


def test_bad_or_conflicting_environment_values_are_user_errors(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CEMA_LOCKED", "1")
    monkeypatch.setenv("CEMA_FROZEN", "1")
    assert main(["sync"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: CEMA_LOCKED and CEMA_FROZEN are both set.")
    assert "hint: " in err
    monkeypatch.setenv("CEMA_FROZEN", "sometimes")
    assert main(["plan"]) == 1
    assert "CEMA_FROZEN='sometimes' is not a yes or no" in capsys.readouterr().err
