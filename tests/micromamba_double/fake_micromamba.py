"""TEST DOUBLE of micromamba: ``create``/``install`` from an explicit file, ``run``, ``--version``.

Implements just what Cema's scripts call, on top of py-rattler, so the scripts' quoting, failure
stops and receipts run for real without a micromamba binary:

- ``micromamba --version``
- ``micromamba create|install [-y] [-r ROOT] -p PREFIX [--relocate-prefix FINAL] -f EXPLICIT``:
  reads ``@EXPLICIT`` URLs with ``#sha256:<hex>`` (or ``#<md5>``), checks each archive's hash
  like micromamba does, reads ``info/index.json`` from it and installs with ``rattler.install``
  into ``PREFIX``, with ``FINAL`` patched into the files when given (rattler's
  ``alternative_target_prefix``, as micromamba 2 does); package cache: the first of
  ``$CONDA_PKGS_DIRS``, else ``ROOT/pkgs``; ``create`` replaces an existing prefix; prints
  ``Linking <name>-<version>-<build>`` per package, like micromamba;
- ``micromamba run [-r ROOT] -p PREFIX CMD ARGS...``: runs CMD with the prefix on PATH and
  ``CONDA_PREFIX`` set.

``write_executable(folder)`` writes ``folder/micromamba``: a shebang to the running interpreter
that calls :func:`main`.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlparse

VERSION = "2.9.0"
REPO = Path(__file__).resolve().parents[2]


def write_executable(folder: Path) -> Path:
    """Write ``folder/micromamba`` (the double, runnable like the real binary) and return it."""
    folder.mkdir(parents=True, exist_ok=True)
    exe = folder / "micromamba"
    exe.write_text(
        f"#!{sys.executable}\n"
        "# TEST DOUBLE of micromamba written by Cema's tests (tests/micromamba_double)\n"
        "import sys\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        "from tests.micromamba_double.fake_micromamba import exit_now, main\n"
        "exit_now(main(sys.argv[1:]))\n",
        encoding="utf-8",
    )
    exe.chmod(0o755)
    return exe


def exit_now(code: int) -> None:
    """Exit without interpreter finalisation.

    py-rattler 0.28 sometimes crashes (SIGSEGV) while the interpreter shuts down after
    ``rattler.install``, once all the work is done: skip the teardown, like a native binary.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _fail(message: str) -> int:
    sys.stderr.write(f"critical libmamba (test double) {message}\n")
    return 1


def _options(args: list[str], *, stop_at_command: bool) -> tuple[dict[str, str], list[str]]:
    """Parse ``-r/--root-prefix``, ``-p/--prefix``, ``--relocate-prefix``, ``-f/--file``, ``-y``;
    the rest is returned."""
    takes = {
        "-r": "root",
        "--root-prefix": "root",
        "-p": "prefix",
        "--prefix": "prefix",
        "--relocate-prefix": "relocate",
        "-f": "file",
        "--file": "file",
    }
    flags = {"-y", "--yes", "-q", "--quiet", "--no-rc"}
    found: dict[str, str] = {}
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        key, _, inline = arg.partition("=")
        if key in takes:
            if inline:
                found[takes[key]] = inline
            else:
                found[takes[key]] = args[i + 1]
                i += 1
        elif arg in flags:
            pass
        elif stop_at_command:
            return found, args[i:]
        else:
            rest.append(arg)
        i += 1
    return found, rest


def _explicit(path: Path) -> list[tuple[str, str | None, str | None]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    if "@EXPLICIT" not in [line.strip() for line in lines]:
        raise ValueError(f"{path} is not an explicit file (no @EXPLICIT line)")
    out = []
    started = False
    for raw in lines:
        line = raw.strip()
        if line == "@EXPLICIT":
            started = True
            continue
        if not started or not line or line.startswith("#"):
            continue
        url, _, fragment = line.partition("#")
        sha256 = fragment[7:] if fragment.startswith("sha256:") else None
        md5 = fragment if fragment and len(fragment) == 32 else None
        out.append((url, sha256, md5))
    return out


def _fetch(url: str, folder: Path) -> Path:
    if url.startswith("file://"):
        return Path(unquote(urlparse(url).path))
    import requests

    target = folder / url.rsplit("/", 1)[-1]
    with requests.get(url, timeout=60, stream=True) as response:
        response.raise_for_status()
        with target.open("wb") as fh:
            for block in response.iter_content(1 << 20):
                fh.write(block)
    return target


def _record(url: str, archive: Path, sha256: str | None, md5: str | None) -> object:
    import rattler

    data = archive.read_bytes()
    actual_sha = hashlib.sha256(data).hexdigest()
    actual_md5 = hashlib.md5(data).hexdigest()
    if sha256 and actual_sha != sha256:
        raise ValueError(f"sha256 mismatch for {url}: expected {sha256}, got {actual_sha}")
    if md5 and actual_md5 != md5:
        raise ValueError(f"md5 mismatch for {url}: expected {md5}, got {actual_md5}")
    index = rattler.IndexJson.from_package_archive(archive)
    noarch = index.noarch
    package = rattler.PackageRecord(
        name=index.name.normalized,
        version=str(index.version),
        build=rattler.BuildString(str(index.build)),
        build_number=int(index.build_number),
        subdir=str(index.subdir),
        noarch=rattler.NoArchType("python" if noarch.python else "generic")
        if (noarch.python or noarch.generic)
        else None,
        depends=list(index.depends),
        constrains=list(index.constrains),
        sha256=bytes.fromhex(actual_sha),
        md5=bytes.fromhex(actual_md5),
        size=len(data),
    )
    if index.timestamp is not None:
        package.timestamp = index.timestamp
    folder_url, _, file_name = url.rpartition("/")
    channel = folder_url.rsplit("/", 1)[0]
    return rattler.RepoDataRecord(package, file_name, url, channel)


def _install(options: dict[str, str], *, create: bool) -> int:
    import rattler

    if "prefix" not in options or "file" not in options:
        return _fail("this double needs --prefix and --file (explicit installs only)")
    prefix = Path(options["prefix"])
    root = Path(options.get("root") or os.environ.get("MAMBA_ROOT_PREFIX") or prefix / ".root")
    pkgs_dirs = [d for d in os.environ.get("CONDA_PKGS_DIRS", "").split(",") if d]
    cache = Path(pkgs_dirs[0]) if pkgs_dirs else root / "pkgs"
    relocate = Path(options["relocate"]) if options.get("relocate") else None
    try:
        entries = _explicit(Path(options["file"]))
    except (OSError, ValueError) as exc:
        return _fail(str(exc))
    with tempfile.TemporaryDirectory(prefix="mm-double-") as tmp:
        records = []
        for url, sha256, md5 in entries:
            print(f"  fetching {url.rsplit('/', 1)[-1]}", flush=True)
            try:
                records.append(_record(url, _fetch(url, Path(tmp)), sha256, md5))
            except Exception as exc:
                return _fail(f"cannot get {url}: {exc}")
        if create and prefix.exists():
            shutil.rmtree(prefix)
        try:
            asyncio.run(
                rattler.install(
                    records,  # type: ignore[arg-type]
                    target_prefix=prefix,
                    alternative_target_prefix=relocate,
                    cache_dir=cache,
                    show_progress=False,
                    execute_link_scripts=False,
                )
            )
        except Exception as exc:
            return _fail(f"installing into {prefix} failed: {exc}")
    for url, _, _ in entries:
        stem = url.rsplit("/", 1)[-1].removesuffix(".conda").removesuffix(".tar.bz2")
        print(f"Linking {stem}", flush=True)
    print(f"Transaction finished: {len(records)} package(s) in {prefix}", flush=True)
    return 0


def _run(options: dict[str, str], command: list[str]) -> int:
    if "prefix" not in options or not command:
        return _fail("usage: micromamba run -p PREFIX CMD [ARGS...]")
    prefix = Path(options["prefix"])
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(prefix / "bin"), env.get("PATH", "")])
    env["CONDA_PREFIX"] = str(prefix)
    exe = shutil.which(command[0], path=env["PATH"]) or command[0]
    return subprocess.call([exe, *command[1:]], env=env)


def main(argv: list[str]) -> int:
    """The double's command line."""
    if argv[:1] in (["--version"], ["-V"]):
        print(VERSION)
        return 0
    if not argv:
        return _fail("no command (this double knows create, install, run)")
    command, args = argv[0], argv[1:]
    if command in ("create", "install"):
        options, rest = _options(args, stop_at_command=False)
        if rest:
            return _fail(f"this double does not take specs or options {rest}")
        return _install(options, create=command == "create")
    if command == "run":
        options, rest = _options(args, stop_at_command=True)
        return _run(options, rest)
    return _fail(f"this double does not implement {command!r}")


if __name__ == "__main__":
    exit_now(main(sys.argv[1:]))
