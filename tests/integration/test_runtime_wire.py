"""The host's wire format and the server's (which cannot import cema) must agree."""

from __future__ import annotations

import ast
import sys

import pytest

from cema._internal import executor_server as server
from cema.runtime import launch, shm, wire

SHARED_CONSTANTS = (
    "PROTOCOL_VERSION", "PICKLE_PROTOCOL",
    "HELLO", "CALL", "IMPORT", "SHUTDOWN", "RESULT", "ERROR", "UNPICKLABLE",
)


@pytest.mark.parametrize("name", SHARED_CONSTANTS)
def test_constants_agree(name: str) -> None:
    assert getattr(server, name) == getattr(wire, name)


def test_header_and_shared_memory_settings_agree() -> None:
    assert server.HEADER.format == wire.HEADER.format
    assert server.SHM_THRESHOLD_BYTES == shm.SHM_THRESHOLD_BYTES
    assert server.SHM_PREFIX == shm.SHM_PREFIX


def test_frames_cross_in_both_directions() -> None:
    frame, _ = wire.encode(wire.CALL, 5, ("mod", "fn", (1, "x"), {"k": None}),
                           outbox=shm.Outbox(), inbox=shm.Inbox())
    kind, request_id, note, body, buffers = server.decode_frame(frame)
    assert (kind, request_id, note) == (wire.CALL, 5, "")
    assert server.pickle.loads(body, buffers=buffers) == ("mod", "fn", (1, "x"), {"k": None})
    frame, _ = server.encode(wire.RESULT, 6, [1, 2], "list")
    reply = wire.decode(frame, inbox=shm.Inbox(), outbox=shm.Outbox())
    assert (reply.kind, reply.request_id, reply.note) == (wire.RESULT, 6, "list")
    assert wire.outcome(reply, what=lambda: "m:f", worker="w") == [1, 2]


def test_the_server_is_standard_library_only_and_python_38_syntax() -> None:
    source = launch.SERVER_PATH.read_text()
    tree = ast.parse(source, feature_version=(3, 8))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert "cema" not in imported
    assert imported <= set(sys.stdlib_module_names)
