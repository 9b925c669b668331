"""Finding micromamba, and downloading the pinned one from a local HTTP server (sha256 checked)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import cema
from cema.engines.micromamba import MicromambaEngine
from cema.engines.micromamba import binary as mm
from cema.model.spec import current_platform
from tests.integration import micromamba_fixtures

micromamba_double = micromamba_fixtures.micromamba_double
real_micromamba = micromamba_fixtures.real_micromamba


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """``(base_url, folder)``: an HTTP server on 127.0.0.1 serving ``folder``."""
    folder = tmp_path / "served"
    (folder / mm.MICROMAMBA_VERSION).mkdir(parents=True)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", folder
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def no_micromamba_around(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Neither ``$CEMA_MICROMAMBA`` nor a micromamba on PATH."""
    monkeypatch.delenv("CEMA_MICROMAMBA", raising=False)
    monkeypatch.delenv(mm.BASE_URL_VARIABLE, raising=False)
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


def serve(folder: Path, asset: str, data: bytes) -> None:
    (folder / mm.MICROMAMBA_VERSION / asset).write_bytes(data)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != ".micromamba.lock")


def test_a_file_with_the_wrong_sha256_is_refused(server, tmp_path: Path) -> None:
    base, folder = server
    serve(folder, "mm-test", b"#!/bin/sh\necho evil\n")
    pin = mm.Pin(asset="mm-test", sha256=hashlib.sha256(b"something else").hexdigest())
    target = tmp_path / "store" / "bin" / "micromamba"
    with pytest.raises(cema.EngineUnavailableError, match="not the pinned") as info:
        mm.download_micromamba(target, platform="linux-64", base_url=base, pin=pin)
    assert "it was not installed" in str(info.value)
    assert not target.exists()
    assert leftovers(target.parent) == []  # no temp file left behind


def test_the_real_pin_table_refuses_a_substitute(server, tmp_path: Path) -> None:
    base, folder = server
    pin = mm.PINS[current_platform()] if current_platform() in mm.PINS else mm.PINS["linux-64"]
    serve(folder, pin.asset, b"not micromamba")
    target = tmp_path / "bin" / "micromamba"
    with pytest.raises(cema.EngineUnavailableError, match=pin.sha256):
        mm.download_micromamba(target, platform=current_platform(), base_url=base, pin=pin)
    assert not target.exists()


def test_a_file_with_the_pinned_sha256_is_installed_once(server, tmp_path: Path) -> None:
    base, folder = server
    data = b"#!/bin/sh\necho 2.9.0\n"
    serve(folder, "mm-test", data)
    pin = mm.Pin(asset="mm-test", sha256=hashlib.sha256(data).hexdigest())
    target = tmp_path / "store" / "bin" / "micromamba"
    assert mm.download_micromamba(target, platform="linux-64", base_url=base, pin=pin) == target
    assert target.read_bytes() == data
    assert mm._usable(target)
    assert leftovers(target.parent) == ["micromamba"]
    # already there with the pinned hash: no second download (the server has lost the file)
    (folder / mm.MICROMAMBA_VERSION / "mm-test").unlink()
    assert mm.download_micromamba(target, platform="linux-64", base_url=base, pin=pin) == target


def test_offline_the_error_says_how_to_provide_one(
    tmp_path: Path, no_micromamba_around: None
) -> None:
    store = cema.Store(tmp_path / "store")
    with pytest.raises(cema.EngineUnavailableError) as info:
        # nothing listens on port 9 of 127.0.0.1 (the discard port): a refused connection
        mm.find_micromamba(store=store, base_url="http://127.0.0.1:9", platform="linux-64")
    assert "could not be downloaded" in str(info.value)
    assert info.value.hint is not None
    assert "--micromamba PATH" in info.value.hint and "CEMA_MICROMAMBA" in info.value.hint
    assert str(mm.stored_binary(store)) in info.value.hint


def test_an_unpinned_platform_says_how_to_provide_one(tmp_path: Path) -> None:
    with pytest.raises(cema.EngineUnavailableError, match="no pinned micromamba for linux-s390x"):
        mm.download_micromamba(tmp_path / "micromamba", platform="linux-s390x")


def test_discovery_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_micromamba_around: None
) -> None:
    def fake(name: str) -> Path:
        path = tmp_path / name / "micromamba"
        path.parent.mkdir()
        path.write_text("#!/bin/sh\necho 2.9.0\n")
        path.chmod(0o755)
        return path

    store = cema.Store(tmp_path / "store")
    stored = mm.stored_binary(store)
    stored.parent.mkdir(parents=True)
    stored.write_text("#!/bin/sh\necho 2.9.0\n")
    stored.chmod(0o755)
    assert mm.find_micromamba(store=store, download=False) == stored
    on_path = fake("on-path")
    monkeypatch.setenv("PATH", str(on_path.parent))
    assert mm.find_micromamba(store=store, download=False) == on_path
    from_env = fake("from-env")
    monkeypatch.setenv("CEMA_MICROMAMBA", str(from_env))
    assert mm.find_micromamba(store=store, download=False) == from_env
    explicit = fake("explicit")
    assert mm.find_micromamba(explicit=explicit, store=store, download=False) == explicit
    with pytest.raises(cema.EngineUnavailableError, match="--micromamba names"):
        mm.find_micromamba(explicit=tmp_path / "nope", store=store)
    stored.unlink()
    monkeypatch.delenv("CEMA_MICROMAMBA")
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(cema.EngineUnavailableError, match="micromamba was not found"):
        mm.find_micromamba(store=store, download=False)


def test_micromamba_1_is_refused(tmp_path: Path) -> None:
    old = tmp_path / "micromamba"
    old.write_text("#!/bin/sh\necho 1.5.8\n")
    old.chmod(0o755)
    engine = MicromambaEngine(binary=old)
    with pytest.raises(cema.EngineUnavailableError, match="need micromamba 2"):
        engine.locate(cema.Store(tmp_path / "store"))


def test_the_real_micromamba_passes_the_version_check(
    tmp_path: Path, real_micromamba: Path
) -> None:
    version = mm.micromamba_version(real_micromamba)
    assert int(version.split(".", 1)[0]) >= mm.MIN_MAJOR_VERSION
    engine = MicromambaEngine(binary=real_micromamba)
    assert engine.locate(cema.Store(tmp_path / "store")) == real_micromamba


def test_sync_downloads_the_pinned_binary_into_the_store(
    server,
    local_channel: Path,
    make_project,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    no_micromamba_around: None,
    micromamba_double: Path,
) -> None:
    base, folder = server
    data = micromamba_double.read_bytes()  # the test double, served as the release file
    platform = current_platform()
    monkeypatch.setitem(
        mm.PINS, platform, mm.Pin(asset="served", sha256=hashlib.sha256(data).hexdigest())
    )
    serve(folder, "served", data)
    monkeypatch.setenv(mm.BASE_URL_VARIABLE, base)
    project_dir = make_project(
        f"""\
        version: 1
        channels: ["{local_channel}"]
        engine: micromamba
        environments:
          hello:
            conda: [cemahello]
        """
    )
    store = cema.Store(tmp_path / "store")
    project = cema.Project.load(project_dir, store=store)
    system = "/usr/bin:/bin"  # bash, but no micromamba
    if shutil.which("micromamba", path=system):
        pytest.skip("a micromamba in /usr/bin would be found before any download")
    monkeypatch.setenv("PATH", f"{tmp_path / 'empty-bin'}:{system}")
    result = project.sync()
    assert mm.stored_binary(store).read_bytes() == data
    prefix = result.prefixes["hello"]
    assert (prefix / ".cema-receipt.json").is_file()
    receipt = store.receipt(prefix.name)
    assert receipt is not None and receipt.engine == "micromamba"


# --- a --micromamba or $CEMA_MICROMAMBA that cannot run: one error line naming the env


@pytest.mark.parametrize("what", ["not executable", "missing", "a folder", "not a program"])
def test_a_micromamba_that_cannot_run_is_one_error_line(
    local_channel: Path, make_project, run_cema, store: cema.Store, tmp_path: Path, what: str
) -> None:
    binary = tmp_path / "micromamba"
    if what == "not executable":
        binary.write_text("#!/bin/sh\n")  # no execute permission
    elif what == "a folder":
        binary.mkdir()
    elif what == "not a program":
        binary.write_bytes(b"\x00garbage, not an executable format")
        binary.chmod(0o755)
    folder = make_project(
        f"""\
        version: 1
        channels: ["{local_channel}"]
        environments:
          hello:
            conda: [cemahello]
        """
    )
    for how in ("flag", "variable"):
        args = ("--micromamba", str(binary)) if how == "flag" else ("--engine", "micromamba")
        env = {"CEMA_MICROMAMBA": str(binary)} if how == "variable" else None
        out = run_cema("sync", *args, cwd=folder, env=env, check=False)
        assert out.returncode == 1
        assert "Traceback" not in out.stderr, out.stderr
        error, hint = out.stderr.splitlines()
        assert error.startswith("error: environment 'hello' cannot be built with micromamba: ")
        assert str(binary) in error
        expected = {
            "not executable": "which is not executable",
            "missing": "which does not exist",
            "a folder": "which is a folder",
            "not a program": "could not be run as micromamba (Exec format error)",
        }[what]
        assert expected in error
        assert hint.startswith("hint: ")
    assert store.inventory() == {}
