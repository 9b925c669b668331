"""`cema run`, `cema shell`, `cema shell-hook` through the real CLI: sync first, then activate."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

import cema
from cema.shellhook import Changes, environ_changes, fish_quote, powershell_quote, render_hook
from tests.conftest import cema_argv, cema_environ

#: a value no naive quoting survives: spaces, both quotes, `$`, backticks, a backslash, newlines
TRICKY = "a b 'single' \"double\" $HOME `echo no` \\n\nsecond line\n"
#: the same value in a YAML double-quoted string
TRICKY_YAML = TRICKY.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def demo_yaml(channel: Path, *, demo: str = "1.0") -> str:
    return f"""\
        version: 1
        channels: ["{channel}"]
        environments:
          demo:
            conda: [python, "cemademo={demo}", cemahello, cemagate]
            variables: {{CEMA_TEST_GREETING: bonjour, CEMA_TRICKY: "{TRICKY_YAML}"}}
        """


def prefix_of(folder: Path, store: cema.Store) -> Path:
    return cema.Project.load(folder, store=store).prefix("demo")


def _env(store: cema.Store, **extra: str) -> dict[str, str]:
    """The environment ``run_cema`` gives its subprocess (for ``subprocess.run`` with input)."""
    return cema_environ(store.root, extra)


def version_code() -> str:
    return "import cemademo; print(cemademo.__version__)"


# --- cema run -------------------------------------------------------------------------------------


def test_run_syncs_a_missing_env_then_stays_quiet(
    local_channel: Path, make_project, run_cema, store: cema.Store
) -> None:
    folder = make_project(demo_yaml(local_channel))
    first = run_cema("run", "demo", "--", "cemahello", cwd=folder)
    prefix = prefix_of(folder, store)
    # stdout is the command's own; what the sync did is on stderr
    assert first.stdout == f"cemahello 1.0 installed in {prefix}\n"
    assert "lock: cema.lock updated (1 env)" in first.stderr
    assert f"create  demo (conda) -> {prefix}" in first.stderr
    again = run_cema("run", "demo", "--", "cemahello", cwd=folder)
    assert again.stdout == first.stdout
    assert again.stderr == ""  # up to date: nothing to say


def test_run_relocks_a_stale_env_first(
    local_channel: Path, make_project, run_cema, store: cema.Store
) -> None:
    folder = make_project(demo_yaml(local_channel))
    run_cema("sync", cwd=folder)
    make_project(demo_yaml(local_channel, demo="2.0"))
    out = run_cema("run", "demo", "--", "python", "-c", version_code(), cwd=folder)
    assert out.stdout == "2.0\n"
    assert "~ cemademo 1.0 -> 2.0" in out.stderr
    assert "update  demo" in out.stderr
    assert "cemademo-2.0" in (folder / "cema.lock").read_text()


def test_run_frozen_installs_the_lock_as_it_is(
    local_channel: Path, make_project, run_cema, store: cema.Store
) -> None:
    folder = make_project(demo_yaml(local_channel))
    run_cema("lock", cwd=folder)
    lock_text = (folder / "cema.lock").read_text()
    make_project(demo_yaml(local_channel, demo="2.0"))  # stale now: --frozen ignores that
    for args in (("--frozen", "demo"), ("demo", "--frozen")):  # before or after NAME
        out = run_cema("run", *args, "--", "python", "-c", version_code(), cwd=folder)
        assert out.stdout == "1.0\n"
    assert (folder / "cema.lock").read_text() == lock_text
    # CEMA_FROZEN is the same as --frozen
    env = {"CEMA_FROZEN": "1"}
    out = run_cema("run", "demo", "--", "python", "-c", version_code(), cwd=folder, env=env)
    assert out.stdout == "1.0\n"


def test_run_locked_on_a_fresh_lock_runs(
    local_channel: Path, make_project, run_cema, store: cema.Store
) -> None:
    folder = make_project(demo_yaml(local_channel))
    run_cema("lock", cwd=folder)
    out = run_cema("run", "demo", "--locked", "--", "cemahello", cwd=folder)
    assert out.stdout == f"cemahello 1.0 installed in {prefix_of(folder, store)}\n"
    assert "lock:" not in out.stderr


def test_run_passes_exit_code_stdin_and_arguments(
    local_channel: Path, make_project, run_cema, store: cema.Store
) -> None:
    folder = make_project(demo_yaml(local_channel))
    run_cema("sync", cwd=folder)
    code = run_cema("run", "demo", "--", "sh", "-c", "exit 7", cwd=folder, check=False)
    assert code.returncode == 7
    assert code.stderr == ""
    argv = run_cema("run", "demo", "--", "printf", "[%s]", "a b", "--", "-x", cwd=folder)
    assert argv.stdout == "[a b][--][-x]"
    proc = subprocess.run(
        [*cema_argv(), "run", "demo", "--", "sh", "-c", "read line; echo got:$line"],
        cwd=folder,
        input="hello\n",
        capture_output=True,
        text=True,
        env=_env(store),
        timeout=120,
        check=True,
    )
    assert proc.stdout == "got:hello\n"


def test_run_errors_are_one_sentence_with_a_hint(
    local_channel: Path, make_project, run_cema
) -> None:
    folder = make_project(demo_yaml(local_channel))
    for args, words in [
        (("demo", "--", "no-such-tool"), "'no-such-tool' was not found in environment 'demo'"),
        (("demo", "--", "./no-such-file"), "'./no-such-file' in environment 'demo' was not found"),
        (("demo", "--bogus", "--", "true"), "'--bogus' is not an option of `cema run`"),
        (("demo",), "no command given"),
    ]:
        proc = run_cema("run", *args, cwd=folder, check=False)
        assert proc.returncode == 1, proc.stderr
        assert proc.stderr.splitlines()[-2:][0].startswith("error: "), proc.stderr
        assert words in proc.stderr and "\nhint: " in proc.stderr
        assert "Traceback" not in proc.stderr


# --- cema shell -----------------------------------------------------------------------------------


SHELL_SCRIPT = """\
echo "shell=$CEMA_SHELL env=$CEMA_ENV"
echo "prefix=$CONDA_PREFIX"
command -v cemahello
echo "gate=$CEMAGATE_ACTIVE"
exit 5
"""


@pytest.mark.parametrize("shell", ["/bin/bash", "", "/bin/sh"])
def test_shell_starts_the_users_shell_activated(
    shell: str, local_channel: Path, make_project, run_cema, store: cema.Store
) -> None:
    folder = make_project(demo_yaml(local_channel))
    env = _env(store, SHELL=shell)
    if not shell:
        del env["SHELL"]  # falls back to /bin/sh
    proc = subprocess.run(
        [*cema_argv(), "shell", "demo"],
        cwd=folder,
        input=SHELL_SCRIPT,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    prefix = prefix_of(folder, store)  # synced first
    assert proc.returncode == 5, proc.stderr
    assert proc.stdout == (
        f"shell=demo env=demo\nprefix={prefix}\n{prefix}/bin/cemahello\ngate=1\n"
    )
    assert "create  demo" in proc.stderr


def test_shell_with_a_missing_shell_says_so(local_channel: Path, make_project, run_cema) -> None:
    folder = make_project(demo_yaml(local_channel))
    proc = run_cema("shell", "demo", cwd=folder, env={"SHELL": "/no/such/shell"}, check=False)
    assert proc.returncode == 1
    assert "error: the shell '/no/such/shell' ($SHELL) was not found." in proc.stderr
    assert "\nhint: " in proc.stderr


# --- cema shell-hook ------------------------------------------------------------------------------


HOOK_CHECK = """\
eval "$(cema_cmd shell-hook demo)" || exit 9
command -v cemahello
echo "prefix=$CONDA_PREFIX env=$CEMA_ENV gate=$CEMAGATE_ACTIVE"
printf '%s' "$CEMA_TRICKY" > tricky.txt
cemahello
"""


def test_shell_hook_evals_in_bash(
    local_channel: Path, make_project, run_cema, store: cema.Store
) -> None:
    folder = make_project(demo_yaml(local_channel))
    env = _env(store, SHELL="/bin/bash")
    cema_cmd = " ".join(f"'{a}'" for a in cema_argv())
    script = f'cema_cmd() {{ {cema_cmd} "$@"; }}\n{HOOK_CHECK}'
    proc = subprocess.run(
        ["bash", "--noprofile", "--norc", "-c", script],
        cwd=folder,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    prefix = prefix_of(folder, store)  # the hook synced it first (on stderr)
    assert proc.stdout.splitlines() == [
        f"{prefix}/bin/cemahello",
        f"prefix={prefix} env=demo gate=1",
        f"cemahello 1.0 installed in {prefix}",
    ]
    assert (folder / "tricky.txt").read_text() == TRICKY
    assert "create  demo" in proc.stderr


def test_shell_hook_prints_only_the_script(local_channel: Path, make_project, run_cema) -> None:
    folder = make_project(demo_yaml(local_channel))
    out = run_cema("shell-hook", "demo", "--shell", "bash", cwd=folder)
    lines = out.stdout.splitlines()
    assert lines[0].startswith("# cema shell-hook: environment 'demo'")
    assert all(
        line.startswith(("#", "export ", "unset ", "hash -r")) or not line.startswith(" ")
        for line in lines
    )
    assert "export CEMA_TEST_GREETING=bonjour" in lines
    assert "create  demo" in out.stderr and "create" not in out.stdout


@pytest.mark.skipif(shutil.which("fish") is None, reason="fish is not installed")
def test_shell_hook_sources_in_fish(
    local_channel: Path, make_project, run_cema, store: cema.Store
) -> None:
    folder = make_project(demo_yaml(local_channel))
    run_cema("sync", cwd=folder)
    hook = run_cema("shell-hook", "demo", "--shell", "fish", cwd=folder).stdout
    (folder / "hook.fish").write_text(hook)
    script = (
        "source hook.fish; or exit 9\n"
        "command -v cemahello\n"
        'echo "prefix=$CONDA_PREFIX gate=$CEMAGATE_ACTIVE"\n'
        "printf '%s' \"$CEMA_TRICKY\" > tricky.txt\n"
    )
    proc = subprocess.run(
        ["fish", "--no-config", "-c", script],
        cwd=folder,
        capture_output=True,
        text=True,
        env=_env(store),
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    prefix = prefix_of(folder, store)
    assert proc.stdout.splitlines() == [f"{prefix}/bin/cemahello", f"prefix={prefix} gate=1"]
    assert (folder / "tricky.txt").read_text() == TRICKY


# --- the renderers --------------------------------------------------------------------------------


CHANGES = Changes(
    set={"CEMA_ENV": "demo", "PATH": "/p/bin:/usr/bin", "X": "it's $x `y`\nz"},
    unset=["VIRTUAL_ENV"],
)


def test_bash_and_zsh_hooks() -> None:
    expected = (
        "# hook\n"
        "unset VIRTUAL_ENV\n"
        "export CEMA_ENV=demo\n"
        "export PATH=/p/bin:/usr/bin\n"
        "export X='it'\"'\"'s $x `y`\nz'\n"
        "hash -r 2>/dev/null || true\n"
    )
    assert render_hook(CHANGES, "bash", comment="hook") == expected
    assert render_hook(CHANGES, "zsh", comment="hook") == expected


def test_fish_hook() -> None:
    assert render_hook(CHANGES, "fish") == (
        "set -e VIRTUAL_ENV\n"
        "set -gx CEMA_ENV 'demo'\n"
        "set -gx PATH '/p/bin' '/usr/bin'\n"
        "set -gx X 'it\\'s $x `y`\nz'\n"
    )
    assert fish_quote("a\\b'c") == "'a\\\\b\\'c'"


def test_powershell_hook() -> None:
    assert render_hook(CHANGES, "powershell", comment="two\nlines") == (
        "# two\n"
        "# lines\n"
        "Remove-Item -Path Env:VIRTUAL_ENV -ErrorAction SilentlyContinue\n"
        "$env:CEMA_ENV = 'demo'\n"
        "$env:PATH = '/p/bin:/usr/bin'\n"
        "$env:X = 'it''s $x `y`\nz'\n"
    )
    # PowerShell also ends a '...' string at the typographic single quotes
    assert powershell_quote("\u2018a\u2019") == "'\u2018\u2018a\u2019\u2019'"


def test_environ_changes_set_unset_and_skip() -> None:
    before = {"PATH": "/usr/bin", "KEEP": "1", "VIRTUAL_ENV": "/v", "BASH_FUNC_f%%": "() {}"}
    after = {"PATH": "/p:/usr/bin", "KEEP": "1", "NEW": "x", "BAD-NAME": "y"}
    changes = environ_changes(before, after)
    assert dict(changes.set) == {"NEW": "x", "PATH": "/p:/usr/bin"}
    assert list(changes.unset) == ["VIRTUAL_ENV"]
    assert list(changes.skipped) == ["BAD-NAME", "BASH_FUNC_f%%"]
