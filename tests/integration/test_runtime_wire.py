"""The wire protocol lives once, in protocol.py, and the server (no cema there) runs on it."""

from __future__ import annotations

import ast
import os
import pickle
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from cema._internal import executor_server as server
from cema._internal import protocol
from cema.runtime import launch
from tests.integration.conftest_runtime import StartWorker, find_python, shm_segments

pytest_plugins = ["tests.integration.runtime_fixtures"]

PROTOCOL_PATH = Path(protocol.__file__).resolve()
#: what protocol.py defines; the server defining any of these would be a second copy
PROTOCOL_NAMES = (
    "PROTOCOL_VERSION",
    "HEADER",
    "PICKLE_PROTOCOL",
    "HELLO",
    "CALL",
    "IMPORT",
    "SHUTDOWN",
    "RESULT",
    "ERROR",
    "UNPICKLABLE",
    "SHM_THRESHOLD_BYTES",
    "SHM_PREFIX",
    "POOLED",
    "LENGTH",
    "Outbox",
    "Inbox",
    "SocketChannel",
    "PipeChannel",
    "encode",
    "decode",
    "decode_frame",
    "bootstrap_line",
    "parse_bootstrap",
    "unlink_segment",
)


def top_level_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(n.id for t in node.targets for n in ast.walk(t) if isinstance(n, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


def imported_modules(tree: ast.Module) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_the_server_defines_no_protocol_of_its_own() -> None:
    tree = ast.parse(launch.SERVER_PATH.read_text())
    assert top_level_names(tree) & set(PROTOCOL_NAMES) == set()
    # the mechanisms themselves: struct formats, segments, mappings are protocol.py's
    assert imported_modules(tree) & {"struct", "mmap", "select", "collections"} == set()
    assert "Struct" not in {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    assert "shared_memory" not in launch.SERVER_PATH.read_text()


def test_the_server_loads_protocol_py_by_path_under_a_private_name() -> None:
    assert Path(server.protocol.__file__).resolve() == PROTOCOL_PATH
    assert server.protocol.__name__ == "_cema_protocol"
    assert sys.modules["_cema_protocol"] is server.protocol
    assert str(PROTOCOL_PATH.parent) not in [str(Path(p or ".").resolve()) for p in sys.path]


@pytest.mark.parametrize("path", [launch.SERVER_PATH, PROTOCOL_PATH], ids=lambda p: p.name)
def test_standard_library_only_and_python_38_syntax(path: Path) -> None:
    tree = ast.parse(path.read_text(), feature_version=(3, 8))
    imported = imported_modules(tree)
    assert "cema" not in imported
    assert imported <= set(sys.stdlib_module_names)


def test_protocol_loads_under_python_38_without_typing() -> None:
    python = find_python("3.8")
    if python is None:
        pytest.skip("no Python 3.8 on this machine")
    script = textwrap.dedent(
        """
        import importlib.util, sys
        spec = importlib.util.spec_from_file_location("_cema_protocol", sys.argv[1])
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        # typing costs the worker's start-up: the protocol imports it for the type checker only
        assert "typing" not in sys.modules, "protocol.py imported typing"
        line = module.bootstrap_line(b"k", 3, "/tmp/s")
        print(module.parse_bootstrap(line), module.HEADER.format)
        """
    )
    out = subprocess.run(
        [str(python), "-I", "-c", script, str(PROTOCOL_PATH)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert out.stdout.split() == ["(1,", "b'k',", "3,", "'/tmp/s')", "<BQIH"]


def test_frames_with_notes_and_releases_cross_between_the_two_loadings() -> None:
    # the host's module and the server's private loading of the same file read each other
    warned: list[str] = []
    host_box, host_in = protocol.Outbox(warned.append), protocol.Inbox()
    peer_box, peer_in = server.protocol.Outbox(warned.append), server.protocol.Inbox()
    peer_in.released.append("cema_gone")  # a release rides on the next frame
    frame, entries = server.protocol.encode(
        protocol.RESULT, 6, [1, 2], "mod.Type", outbox=peer_box, inbox=peer_in
    )
    assert entries == ()
    kind, request_id, note, body, buffers = protocol.decode(frame, inbox=host_in, outbox=host_box)
    assert (kind, request_id, note, buffers) == (protocol.RESULT, 6, "mod.Type", ())
    assert pickle.loads(body) == [1, 2]
    frame, _ = protocol.encode(protocol.CALL, 7, ("m", "f", (), {}), outbox=host_box, inbox=host_in)
    kind, request_id, note, body, buffers = server.protocol.decode(
        frame, inbox=peer_in, outbox=peer_box
    )
    assert (kind, request_id, note, buffers) == (protocol.CALL, 7, "", ())
    assert pickle.loads(body) == ("m", "f", (), {})
    assert warned == []


@pytest.mark.parametrize("address", ["/tmp/cema-worker-x/worker.sock", "/tmp/ünï cödé/w.sock"])
@pytest.mark.parametrize("fd", [5, None])
def test_the_bootstrap_line_round_trips(address: str, fd: int | None) -> None:
    key = os.urandom(32)
    line = protocol.bootstrap_line(key, fd, address)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert key.hex().encode() in line
    assert protocol.parse_bootstrap(line) == (protocol.PROTOCOL_VERSION, key, fd, address)


PROBE = textwrap.dedent(
    """
    import sys

    def protocol_in_use():
        loaded = sys.modules["_cema_protocol"]
        return loaded.__file__, loaded.HEADER.format, "%d.%d" % sys.version_info[:2]

    def fill(nbytes, byte):
        import pickle

        return pickle.PickleBuffer(bytearray([byte]) * nbytes)  # out of band, as numpy does

    def check(data):
        view = memoryview(data)
        return view.nbytes, bytes(view[:2]), bytes(view[-2:])
    """
)


def test_a_python_38_worker_runs_on_protocol_py(
    tmp_path: Path, venv_python: Callable[[str], Path], start_worker: StartWorker
) -> None:
    """Calls and a >1 MiB buffer go through the server's private loading of protocol.py."""
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    users = tmp_path / "users"
    users.mkdir()
    (users / "protocol.py").write_text("def whoami():\n    return 'the user'\n")
    before = shm_segments()
    worker = start_worker(
        venv_python("3.8"), name="py38-protocol", extra_env={"PYTHONPATH": str(users)}
    )
    path, header, version = worker.call(probe, "protocol_in_use")
    assert (Path(path).resolve(), header, version) == (PROTOCOL_PATH, protocol.HEADER.format, "3.8")
    assert worker.call("protocol", "whoami") == "the user"  # not shadowed by ours
    nbytes = 3 * protocol.SHM_THRESHOLD_BYTES + 5
    data = bytearray(b"\x01\x02") * (nbytes // 2)
    for _ in range(2):
        assert worker.call(probe, "check", (pickle.PickleBuffer(data),)) == (
            len(data),
            b"\x01\x02",
            b"\x01\x02",
        )
        back = memoryview(worker.call(probe, "fill", (nbytes, 9)))
        assert (back.nbytes, bytes(back[:1]), bytes(back[-1:])) == (nbytes, b"\x09", b"\x09")
        del back
    assert shm_segments() - before  # the buffers went through pooled segments, kept for reuse
    worker.close()
    assert shm_segments() - before == set()
