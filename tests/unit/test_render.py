"""The micromamba script renderer: golden scripts in both shells, quoting, secrets, order."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from cema.engines.micromamba.script import (
    Script,
    bash_quote,
    explicit_lines,
    install_order,
    powershell_quote,
    render_script,
)
from cema.model.lock import CondaRecord, LockedPlatform, PipRecord
from cema.model.plan import Create, PackageDiff, Plan, Remove, Reuse, Update
from cema.model.receipt import Receipt

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
UPDATE = os.environ.get("CEMA_UPDATE_GOLDEN") == "1"
SHA = "0123456789abcdef" * 4
#: fixed fake store paths: golden files never hold this machine's paths
STORE = {"bash": "/fake/cema store", "powershell": "C:\\fake\\cema store"}
HOSTILE_STORE = {
    "bash": '/fake/it\'s a "store" (v2) $HOME `id` \\ ~',
    "powershell": 'C:\\fake\\it\'s a "store" (v2) $env:HOME `id` \u2019q\u2019',
}
A1 = "a1" * 12
A2 = "b2" * 12
A3 = "c3" * 12
OLD = "d4" * 12


@dataclass(frozen=True, kw_only=True, slots=True)
class FakeInterpreter:
    path: Path
    version: str


@dataclass(frozen=True, kw_only=True, slots=True)
class FakeEnv:
    env: str
    address: str
    content: LockedPlatform
    interpreter: FakeInterpreter | None = None
    link: str = "hardlink"


def conda(name: str, version: str, *, depends: tuple[str, ...] = (), url: str = "") -> CondaRecord:
    subdir = "noarch" if depends else "linux-64"
    file = f"{name}-{version}-0.conda"
    return CondaRecord(
        name=name,
        version=version,
        build="0",
        build_number=0,
        subdir=subdir,
        channel="https://conda.anaconda.org/conda-forge/",
        url=url or f"https://conda.anaconda.org/conda-forge/{subdir}/{file}",
        sha256=SHA,
        depends=depends,
    )


PYTHON = conda("python", "3.11.9")
DEMO = conda("demo", "1.0", depends=("python >=3.8", "zlib"))
ZLIB = conda("zlib", "1.3")
SIX = PipRecord(
    name="six",
    version="1.16.0",
    url="https://files.pythonhosted.org/packages/d9/5a/six-1.16.0-py2.py3-none-any.whl",
    sha256=SHA,
)


def conda_env(name: str, address: str, *records: CondaRecord, pip: tuple[PipRecord, ...] = ()):
    content = LockedPlatform(platform="linux-64", kind="conda", conda=records, pip=pip)
    return FakeEnv(env=name, address=address, content=content)


def venv_env(name: str, address: str, interpreter: str) -> FakeEnv:
    content = LockedPlatform(platform="linux-64", kind="venv", pip=(SIX,))
    return FakeEnv(
        env=name,
        address=address,
        content=content,
        interpreter=FakeInterpreter(path=Path(interpreter), version="3.11.9"),
    )


def render(plan: Plan, envs: list[FakeEnv], shell: str, store: str | None = None) -> Script:
    return render_script(
        plan,
        envs,
        store_root=store or STORE[shell],
        shell=shell,  # type: ignore[arg-type]
        created=1_700_000_000.0,
    )


def check_golden(name: str, script: Script) -> None:
    suffix = ".sh" if script.shell == "bash" else ".ps1"
    path = GOLDEN / f"{name}{suffix}"
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(script.text, encoding="utf-8")
    assert path.is_file(), f"{path} is missing: run with CEMA_UPDATE_GOLDEN=1 to write it"
    assert script.text == path.read_text(encoding="utf-8"), (
        f"{path.name} changed: review the diff, then run with CEMA_UPDATE_GOLDEN=1"
    )
    if script.shell == "bash":
        bash_n(script.text)


def bash_n(text: str) -> None:
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash is not installed")
    proc = subprocess.run([bash, "-n"], input=text, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


# --- the plans ------------------------------------------------------------------------------


def create_case() -> tuple[Plan, list[FakeEnv]]:
    env = conda_env("demo", A1, DEMO, PYTHON, ZLIB, pip=(SIX,))
    return Plan(actions=(Create(env="demo", address=A1, kind="conda"),)), [env]


def update_case() -> tuple[Plan, list[FakeEnv]]:
    demo = conda_env("demo", A1, DEMO, PYTHON, ZLIB)
    tools = conda_env("tools", A2, ZLIB)
    plan = Plan(
        actions=(
            Update(
                env="demo",
                old_address=OLD,
                address=A1,
                kind="conda",
                diff=PackageDiff(changed=(("demo", "0.9", "1.0"),)),
            ),
            Reuse(env="other", address=A3, kind="conda"),
            Update(
                env="tools",
                old_address=A3,
                address=A2,
                kind="conda",
                diff=PackageDiff(removed=(("bzip2", "1.0.8"),)),
                build=False,
            ),
            Remove(address=OLD, was="demo"),
        )
    )
    return plan, [demo, tools]


def remove_case() -> tuple[Plan, list[FakeEnv]]:
    return Plan(actions=(Remove(address=OLD, was="demo"), Remove(address=A3))), []


def hostile_case() -> tuple[Plan, list[FakeEnv]]:
    env = conda_env("demo", A1, PYTHON, pip=(SIX,))
    venv = venv_env("tools", A2, '/opt/my pythons/it\'s "3.11"/bin/python3')
    plan = Plan(
        actions=(
            Create(env="demo", address=A1, kind="conda"),
            Create(env="tools", address=A2, kind="venv"),
            Remove(address=OLD),
        )
    )
    return plan, [env, venv]


CASES = {
    "create": (create_case, STORE),
    "update": (update_case, STORE),
    "remove": (remove_case, STORE),
    "hostile_paths": (hostile_case, HOSTILE_STORE),
}


@pytest.mark.parametrize("shell", ["bash", "powershell"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_golden_scripts(case: str, shell: str) -> None:
    make, stores = CASES[case]
    plan, envs = make()
    check_golden(f"{case}_{shell}", render(plan, envs, shell, stores[shell]))


def test_golden_files_hold_no_machine_paths() -> None:
    here = str(Path.cwd())
    home = str(Path.home())
    for path in sorted(GOLDEN.iterdir()):
        text = path.read_text(encoding="utf-8")
        assert here not in text and (home == "/" or home not in text), path.name
        assert "/tmp/" not in text, path.name


def test_every_golden_bash_script_parses() -> None:
    scripts = sorted(GOLDEN.glob("*.sh"))
    assert len(scripts) == len(CASES)
    for path in scripts:
        bash_n(path.read_text(encoding="utf-8"))


# --- the pieces -----------------------------------------------------------------------------


def test_install_order_puts_dependencies_first() -> None:
    names = [r.name for r in install_order([DEMO, ZLIB, PYTHON])]
    assert names == ["python", "zlib", "demo"]
    lines = explicit_lines([DEMO, PYTHON, ZLIB], platform="linux-64")
    assert lines[:2] == ["# platform: linux-64", "@EXPLICIT"]
    assert lines[2] == f"{PYTHON.url}#sha256:{SHA}"


def test_a_dependency_cycle_still_orders_every_record() -> None:
    a = conda("a", "1", depends=("b",))
    b = conda("b", "1", depends=("a",))
    assert sorted(r.name for r in install_order([a, b])) == ["a", "b"]


@pytest.mark.parametrize(
    "text",
    ["plain", "two words", "it's", 'say "hi"', "$HOME `id` $(id)", "a\\b", "new\nline", "(x) & y;"],
)
def test_bash_quote_round_trips_through_bash(text: str) -> None:
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash is not installed")
    out = subprocess.run(
        [bash, "-c", f"printf '%s' {bash_quote(text)}"], capture_output=True, text=True, check=True
    )
    assert out.stdout == text


def test_powershell_quote_doubles_every_kind_of_single_quote() -> None:
    assert powershell_quote("it's") == "'it''s'"
    assert powershell_quote("\u2018a\u2019") == "'\u2018\u2018a\u2019\u2019'"
    assert powershell_quote('$env:X "y" `z`') == "'$env:X \"y\" `z`'"


def test_receipt_is_the_embedded_engines_json_with_engine_micromamba() -> None:
    plan, envs = create_case()
    text = render(plan, envs, "bash").text
    expected = Receipt(
        address=A1,
        kind="conda",
        platform="linux-64",
        conda=(("demo", "1.0"), ("python", "3.11.9"), ("zlib", "1.3")),
        pip=(("six", "1.16.0"),),
        builds=(("demo", "0"), ("python", "0"), ("zlib", "0")),
        python="3.11.9",
        engine="micromamba",
        created=1_700_000_000.0,
    ).to_json()
    assert bash_quote(expected) in text
    assert powershell_quote(expected) in render(plan, envs, "powershell").text
    # written last: after the pip layer and the activation hook
    steps = ['"$UV" pip install', "cema_hook activation-cache", f"cema_receipt {A1}"]
    assert [text.index(s) for s in steps] == sorted(text.index(s) for s in steps)


@pytest.mark.parametrize("shell", ["bash", "powershell"])
def test_credentials_in_urls_become_environment_variables(shell: str) -> None:
    private = conda(
        "tool", "1.0", url="https://alice:s3cr3t@private.example.com/chan/linux-64/tool-1.0-0.conda"
    )
    token = conda(
        "lib", "2.0", url="https://conda.anaconda.org/t/tk-XYZ-123/private/linux-64/lib-2.0-0.conda"
    )
    pip = PipRecord(
        name="six", version="1.16.0", url="https://bob:pw@pypi.example.com/six.whl", sha256=SHA
    )
    env = conda_env("demo", A1, private, token, pip=(pip,))
    plan = Plan(actions=(Create(env="demo", address=A1, kind="conda"),))
    script = render(plan, [env], shell)
    for secret in ("s3cr3t", "alice", "tk-XYZ-123", "bob:pw"):
        assert secret not in script.text
    assert script.secrets == {
        "CEMA_CHANNEL_AUTH_1": "alice:s3cr3t",
        "CEMA_CHANNEL_TOKEN_1": "tk-XYZ-123",
        "CEMA_CHANNEL_AUTH_2": "bob:pw",
    }
    assert set(script.variables) == set(script.secrets)
    if shell == "bash":
        assert "'https://'\"${CEMA_CHANNEL_AUTH_1}\"'@private.example.com/" in script.text
        assert "/t/'\"${CEMA_CHANNEL_TOKEN_1}\"'/private/linux-64/" in script.text
        assert ': "${CEMA_CHANNEL_TOKEN_1:?set CEMA_CHANNEL_TOKEN_1 to' in script.text
        bash_n(script.text)
    else:
        assert "('https://' + $env:CEMA_CHANNEL_AUTH_1 + '@private.example.com/" in script.text
        assert "if (-not $env:CEMA_CHANNEL_TOKEN_1) { throw" in script.text


def test_bash_puts_the_credentials_back_at_run_time() -> None:
    from cema.engines.micromamba.common import _bash_word, _Secrets

    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash is not installed")
    url = "https://al'ice:s3$cr`et@h.example/t/tok$en/c/linux-64/a-1-0.conda#sha256:00"
    secrets = _Secrets()
    word = _bash_word(secrets.split(url))
    assert "s3$cr" not in word and "tok$en" not in word
    out = subprocess.run(
        [bash, "-c", f"printf '%s' {word}"],
        env={**os.environ, **secrets.values},
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout == url


def test_the_same_secret_gets_one_variable() -> None:
    a = conda("a", "1", url="https://u:p@h.example/c/linux-64/a-1-0.conda")
    b = conda("b", "1", url="https://u:p@h.example/c/linux-64/b-1-0.conda")
    plan = Plan(actions=(Create(env="demo", address=A1, kind="conda"),))
    script = render(plan, [conda_env("demo", A1, a, b)], "bash")
    assert script.secrets == {"CEMA_CHANNEL_AUTH_1": "u:p"}


def test_a_plan_that_builds_nothing_renders_a_script_that_does_nothing() -> None:
    plan = Plan(actions=(Reuse(env="demo", address=A1, kind="conda"),))
    text = render(plan, [], "bash").text
    assert "# --- reuse demo" in text
    assert '$MAMBA" create' not in text
    bash_n(text)


def test_unknown_shell_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown shell"):
        render_script(Plan(), [], store_root="/x", shell="fish")  # type: ignore[arg-type]
