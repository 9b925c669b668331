"""The pip layer's indexes (issue #14): ``pypi-options`` in the spec, the user's ``PIP_*``
variables, find-links folders, credentials kept out of the lock, logs and caches, and
``cema import`` of index lines; against a local simple index (no internet)."""

from __future__ import annotations

import base64
import hashlib
import http.server
import sys
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cema.model.spec import load_project

PY_MM = f"{sys.version_info.major}.{sys.version_info.minor}"
SECRET = "s3cr3t-pw"
#: what every ``cema`` here runs with: the machine's own pip settings left out
NO_USER_INDEX = {"PIP_FIND_LINKS": "", "PIP_INDEX_URL": "", "PIP_EXTRA_INDEX_URL": ""}


def make_wheel(folder: Path, name: str, version: str) -> Path:
    """A pure-Python wheel written by hand: module ``name`` with ``VERSION``."""
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    info = f"{name}-{version}.dist-info"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(f"{name}/__init__.py", f"VERSION = {version!r}\n")
        archive.writestr(
            f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        )
        archive.writestr(
            f"{info}/WHEEL",
            "Wheel-Version: 1.0\nGenerator: cema-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        archive.writestr(f"{info}/RECORD", "")
    return wheel


@dataclass
class Index:
    """A PEP 503 simple index served on localhost; ``auth`` (``user:password``) if required."""

    url: str
    wheels: dict[str, list[Path]]
    auth: str | None = None
    requests: list[str] = field(default_factory=list)

    def with_credentials(self) -> str:
        assert self.auth is not None
        return self.url.replace("http://", f"http://{self.auth}@")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _serve(index: Index) -> http.server.ThreadingHTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_HEAD(self) -> None:  # uv asks for ranges first; a plain GET is enough
            self.send_response(405)
            self.end_headers()

        def do_GET(self) -> None:
            index.requests.append(self.path)
            wanted = "Basic " + base64.b64encode((index.auth or "").encode()).decode()
            if index.auth and self.headers.get("Authorization") != wanted:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="cema-tests"')
                self.end_headers()
                return
            parts = [p for p in self.path.split("/") if p]
            body = None
            if parts[:1] == ["simple"] and len(parts) == 2 and parts[1] in index.wheels:
                body = "".join(
                    f'<a href="/files/{w.name}#sha256={_sha256(w)}">{w.name}</a>'
                    for w in index.wheels[parts[1]]
                ).encode()
            elif parts[:1] == ["files"] and len(parts) == 2:
                found = [w for ws in index.wheels.values() for w in ws if w.name == parts[1]]
                body = found[0].read_bytes() if found else None
            self.send_response(200 if body is not None else 404)
            if parts[:1] == ["simple"]:
                self.send_header("Content-Type", "text/html")
            self.end_headers()
            if body is not None:
                self.wfile.write(body)

    return http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)


@pytest.fixture
def serve_index(tmp_path: Path) -> Iterator[object]:
    """``serve_index(auth=None) -> Index`` of ``cemaidx`` 1.0 (stopped after the test)."""
    servers: list[http.server.ThreadingHTTPServer] = []

    def start(auth: str | None = None) -> Index:
        wheels = {"cemaidx": [make_wheel(tmp_path / "index-files", "cemaidx", "1.0")]}
        index = Index(url="", wheels=wheels, auth=auth)
        server = _serve(index)
        index.url = f"http://127.0.0.1:{server.server_address[1]}/simple"
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return index

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _venv_spec(options: str = "", pip: str = "[cemaidx]") -> str:
    return f'version: 1\n{options}environments:\n  tools:\n    python: "{PY_MM}"\n    pip: {pip}\n'


def test_spec_index_with_credentials_is_used_and_never_written(
    serve_index, make_project, run_cema, store
) -> None:
    index = serve_index(auth=f"user:{SECRET}")
    folder = make_project(_venv_spec(f"pypi-options:\n  index-url: {index.with_credentials()}\n"))
    proc = run_cema("-v", "lock", cwd=folder, env=NO_USER_INDEX)
    lock = (folder / "cema.lock").read_text()
    assert f"{index.url.removesuffix('/simple')}/files/cemaidx-1.0-py3-none-any.whl" in lock
    assert SECRET not in lock
    assert SECRET not in proc.stdout + proc.stderr
    # the validated-spec cache keeps no copy of a password
    assert not any(SECRET in p.read_text() for p in store.root.rglob("*.json"))
    # installing from the lock: the credentials come from the user's environment (pip's name)
    env = {**NO_USER_INDEX, "PIP_INDEX_URL": index.with_credentials()}
    proc = run_cema("-v", "sync", cwd=folder, env=env)
    assert SECRET not in proc.stdout + proc.stderr
    code = "import cemaidx; print(cemaidx.VERSION)"
    proc = run_cema("run", "--frozen", "tools", "--", "python", "-c", code, cwd=folder, env=env)
    assert proc.stdout.strip() == "1.0"


def test_pip_index_variables_of_the_user_are_honoured(serve_index, make_project, run_cema) -> None:
    index = serve_index()
    folder = make_project(_venv_spec())
    run_cema("lock", cwd=folder, env={**NO_USER_INDEX, "PIP_INDEX_URL": index.url})
    assert "/files/cemaidx-1.0-py3-none-any.whl" in (folder / "cema.lock").read_text()
    assert "/simple/cemaidx/" in index.requests


def test_find_links_are_relative_to_the_spec_and_win_over_the_user_s(
    serve_index, make_project, run_cema, tmp_path: Path
) -> None:
    index = serve_index()  # has no cemalocal: it only keeps uv away from PyPI
    folder = make_project(
        _venv_spec(
            f"pypi-options:\n  index-url: {index.url}\n  find-links: [wheels]\n",
            pip="[cemalocal]",
        )
    )
    make_wheel(folder / "wheels", "cemalocal", "2.0")
    elsewhere = tmp_path / "elsewhere"
    make_wheel(elsewhere, "cemalocal", "3.0")
    env = {**NO_USER_INDEX, "PIP_FIND_LINKS": str(elsewhere)}
    run_cema("--project", folder, "lock", cwd=tmp_path, env=env)
    lock = (folder / "cema.lock").read_text()
    assert "cemalocal-2.0-py3-none-any.whl" in lock
    assert "3.0" not in lock


def test_changing_pypi_options_makes_the_lock_stale(serve_index, make_project, run_cema) -> None:
    index = serve_index()
    folder = make_project(_venv_spec(f"pypi-options:\n  index-url: {index.url}\n"))
    run_cema("lock", cwd=folder, env=NO_USER_INDEX)
    run_cema("lock", "--check", cwd=folder, env=NO_USER_INDEX)
    other = serve_index()
    make_project(
        _venv_spec(f"pypi-options:\n  index-url: {index.url}\n  extra-index-urls: [{other.url}]\n")
    )
    proc = run_cema("lock", "--check", cwd=folder, env=NO_USER_INDEX, check=False)
    assert proc.returncode == 1
    assert "out of date" in proc.stderr


def test_env_pypi_options_replace_the_project_s_key_by_key(make_project) -> None:
    folder = make_project(
        "version: 1\npypi-options:\n  index-url: https://a.invalid/simple\n"
        "  find-links: [./w]\nenvironments:\n  one:\n    pip: [six]\n"
        "    pypi-options: {index-url: 'https://b.invalid/simple'}\n"
        "  two:\n    pip: [six]\n"
    )
    project = load_project(folder)
    one, two = project.env("one").pypi_options, project.env("two").pypi_options
    assert one is not None and two is not None
    assert (one.index_url, one.find_links) == ("https://b.invalid/simple", ("./w",))
    assert (two.index_url, two.find_link_locations()) == (
        "https://a.invalid/simple",
        [str(folder.resolve() / "w")],
    )


def test_import_writes_index_lines_into_pypi_options(tmp_path: Path, run_cema) -> None:
    source = tmp_path / "reqs" / "requirements.txt"
    source.parent.mkdir()
    source.write_text(
        "--index-url https://user:pw@private.example/simple\n"
        "--extra-index-url=https://mirror.example/simple\n"
        "-f ./wheels\n"
        "six\n"
    )
    project = tmp_path / "project"
    project.mkdir()
    proc = run_cema("import", source, cwd=project)
    text = (project / "cema.yaml").read_text()
    assert "pw@" not in text
    assert "credentials" in proc.stderr  # said, with the line
    options = load_project(project).env("default").pypi_options
    assert options is not None
    assert options.index_url == "https://private.example/simple"
    assert options.extra_index_urls == ("https://mirror.example/simple",)
    assert options.find_links == ("../reqs/wheels",)
