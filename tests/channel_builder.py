"""Write small conda packages by hand (deterministic ``.tar.bz2``) and index them into a channel."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import sys
import tarfile
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

#: Every archive member and every ``index.json`` carries this time: archives are byte-identical
#: from one build to the next (2024-01-01T00:00:00Z).
EPOCH_S = 1_704_067_200

#: The text placeholder our packages carry where the install prefix goes (rattler replaces it in
#: files that ``info/paths.json`` marks with ``file_mode: text``).
PLACEHOLDER = "/opt/cema-test-build-prefix_placehold_placehold_placehold_placehold_placehold"


@dataclass(frozen=True, kw_only=True, slots=True)
class PackageFile:
    """One file of a package: regular (``content``) or a symbolic link (``symlink_to``)."""

    path: str
    content: bytes = b""
    executable: bool = False
    symlink_to: str | None = None
    #: True when ``content`` holds :data:`PLACEHOLDER` and must get the prefix at install time
    has_prefix: bool = False


@dataclass(frozen=True, kw_only=True, slots=True)
class Package:
    """A conda package to write: its ``info/index.json`` fields and its files."""

    name: str
    version: str
    build: str = "0"
    build_number: int = 0
    subdir: str = "noarch"
    noarch: str | None = None
    depends: tuple[str, ...] = ()
    files: tuple[PackageFile, ...] = field(default=())

    @property
    def file_name(self) -> str:
        """``name-version-build.tar.bz2``."""
        return f"{self.name}-{self.version}-{self.build}.tar.bz2"


def sha256_hex(data: bytes) -> str:
    """The sha256 of ``data`` as lower-case hex."""
    return hashlib.sha256(data).hexdigest()


def _info_files(pkg: Package) -> dict[str, bytes]:
    index: dict[str, object] = {
        "build": pkg.build,
        "build_number": pkg.build_number,
        "depends": list(pkg.depends),
        "license": "MIT",
        "name": pkg.name,
        "subdir": pkg.subdir,
        "timestamp": EPOCH_S * 1000,
        "version": pkg.version,
    }
    if pkg.noarch:
        index["noarch"] = pkg.noarch
    if pkg.subdir != "noarch":
        os_name, _, arch = pkg.subdir.partition("-")
        index["platform"] = os_name
        index["arch"] = {"64": "x86_64"}.get(arch, arch)
    entries = []
    for f in sorted(pkg.files, key=lambda f: f.path):
        if f.symlink_to is not None:
            target = f.symlink_to.encode()
            entry: dict[str, object] = {
                "_path": f.path,
                "path_type": "softlink",
                # like rattler: the hash of the link's text, not of what it points at
                "sha256": sha256_hex(target),
                "size_in_bytes": len(target),
            }
        else:
            entry = {
                "_path": f.path,
                "path_type": "hardlink",
                "sha256": sha256_hex(f.content),
                "size_in_bytes": len(f.content),
            }
            if f.has_prefix:
                entry["file_mode"] = "text"
                entry["prefix_placeholder"] = PLACEHOLDER
        entries.append(entry)
    out = {
        "info/index.json": _json(index),
        "info/paths.json": _json({"paths": entries, "paths_version": 1}),
        "info/files": "".join(
            f"{f.path}\n" for f in sorted(pkg.files, key=lambda f: f.path)
        ).encode(),
        "info/about.json": _json({"summary": f"{pkg.name}: a package made by the Cema test suite"}),
    }
    prefixed = [f for f in pkg.files if f.has_prefix]
    if prefixed:
        # the legacy form, for tools that do not read paths.json
        out["info/has_prefix"] = "".join(
            f"{PLACEHOLDER} text {f.path}\n" for f in sorted(prefixed, key=lambda f: f.path)
        ).encode()
    if pkg.noarch == "python":
        out["info/link.json"] = _json({"noarch": {"type": "python"}, "package_metadata_version": 1})
    return out


def _json(data: object) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()


def _member(name: str, *, size: int = 0, mode: int = 0o644) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = mode
    info.mtime = EPOCH_S
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def write_package(pkg: Package, channel: Path) -> Path:
    """Write ``pkg`` as a deterministic ``.tar.bz2`` into ``channel/<subdir>/``."""
    target = channel / pkg.subdir / pkg.file_name
    target.parent.mkdir(parents=True, exist_ok=True)
    members: list[tuple[str, PackageFile | bytes]] = [
        *((p, data) for p, data in _info_files(pkg).items()),
        *((f.path, f) for f in pkg.files),
    ]
    buffer = io.BytesIO()
    # bz2 writes no time stamp, and GNU tar headers with fixed fields make the archive stable
    with tarfile.open(fileobj=buffer, mode="w:bz2", format=tarfile.GNU_FORMAT) as tar:
        for path, item in sorted(members, key=lambda m: m[0]):
            if isinstance(item, bytes):
                tar.addfile(_member(path, size=len(item)), io.BytesIO(item))
            elif item.symlink_to is not None:
                info = _member(path, mode=0o777)
                info.type = tarfile.SYMTYPE
                info.linkname = item.symlink_to
                tar.addfile(info)
            else:
                mode = 0o755 if item.executable else 0o644
                tar.addfile(
                    _member(path, size=len(item.content), mode=mode), io.BytesIO(item.content)
                )
    target.write_bytes(buffer.getvalue())
    return target


def index_channel(channel: Path) -> Path:
    """Write ``repodata.json`` for every subdir of ``channel`` (``noarch`` always exists)."""
    from rattler.index import index_fs

    (channel / "noarch").mkdir(parents=True, exist_ok=True)
    # py-rattler 0.28: index_fs is a coroutine; plain JSON only, no .zst and no shards
    asyncio.run(index_fs(channel, write_zst=False, write_shards=False, force=True))
    return channel


def build_channel(channel: Path, packages: Iterable[Package]) -> Path:
    """Write ``packages`` into ``channel`` and index it."""
    for pkg in packages:
        write_package(pkg, channel)
    return index_channel(channel)


# --- the packages the suite uses ----------------------------------------------------------------


def host_platform() -> str:
    """This machine's conda platform (``linux-64``...), as Cema computes it."""
    from cema.model.spec import current_platform

    return current_platform()


def host_interpreter() -> Path:
    """The real interpreter behind the running one (the pyenv python, not a venv's link)."""
    base = Path(getattr(sys, "_base_executable", None) or sys.executable)
    return base.resolve()


def python_package(
    interpreter: Path | None = None, *, subdir: str | None = None, build: str = "cema_host_0"
) -> Package:
    """A ``python`` package whose prefix is a venv of ``interpreter`` (default: the host's).

    ``bin/python*`` link to the interpreter and ``pyvenv.cfg`` at the prefix root makes
    ``sys.prefix`` the conda prefix, so ``lib/pythonX.Y/site-packages`` inside it is used.
    """
    exe = (interpreter or host_interpreter()).resolve()
    if interpreter is None:
        version = ".".join(str(p) for p in sys.version_info[:3])
    else:
        import subprocess

        version = subprocess.run(
            [str(exe), "-c", "import sys; print('.'.join(map(str, sys.version_info[:3])))"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    major_minor = ".".join(version.split(".")[:2])
    cfg = textwrap.dedent(
        f"""\
        home = {exe.parent}
        include-system-site-packages = false
        version = {version}
        """
    ).encode()
    files = (
        PackageFile(path="pyvenv.cfg", content=cfg),
        PackageFile(path="bin/python", symlink_to=str(exe)),
        PackageFile(path="bin/python3", symlink_to=str(exe)),
        PackageFile(path=f"bin/python{major_minor}", symlink_to=str(exe)),
        # directories cannot be shipped empty: a marker keeps site-packages in the prefix
        PackageFile(
            path=f"lib/python{major_minor}/site-packages/cema_host_python.txt",
            content=f"python {version} of the Cema test suite, running {exe}\n".encode(),
        ),
    )
    return Package(
        name="python",
        version=version,
        build=build,
        subdir=subdir or host_platform(),
        files=files,
    )


def noarch_python_package(
    name: str, version: str, *, depends: Sequence[str] = ("python",), body: str = ""
) -> Package:
    """A ``noarch: python`` package: module ``name`` with ``__version__`` and ``hello()``."""
    module = (
        textwrap.dedent(
            f'''\
        """{name} {version}: a module installed by a Cema test package."""

        __version__ = "{version}"


        def hello(who="world"):
            return "hello " + who + " from {name} " + __version__
        '''
        )
        + body
    )
    return Package(
        name=name,
        version=version,
        build="py_0",
        noarch="python",
        depends=tuple(depends),
        files=(PackageFile(path=f"site-packages/{name}/__init__.py", content=module.encode()),),
    )


def script_package(name: str, version: str, *, extra_files: Sequence[PackageFile] = ()) -> Package:
    """A ``noarch: generic`` package with ``bin/<name>``: prints its version and install prefix."""
    script = textwrap.dedent(
        f"""\
        #!/bin/sh
        # the prefix below is a placeholder the installer replaces with the real prefix
        echo "{name} {version} installed in {PLACEHOLDER}"
        """
    ).encode()
    return Package(
        name=name,
        version=version,
        noarch="generic",
        files=(
            PackageFile(path=f"bin/{name}", content=script, executable=True, has_prefix=True),
            *extra_files,
        ),
    )


#: the gate folder under ``$HOME``: while ``hold`` exists there, ``cemagate``'s activation waits
GATE_DIR = "cema-test-gate"


def gate_package(name: str = "cemagate", version: str = "1.0") -> Package:
    """A package whose ``activate.d`` script waits while ``$HOME/cema-test-gate/hold`` exists.

    Cema runs activation scripts once, after publishing a prefix and before writing its receipt,
    with only ``PATH``, ``CONDA_PREFIX`` and ``HOME`` set: a test that points ``HOME`` at a folder
    holding ``cema-test-gate/hold`` can stop a sync right there (``waiting`` appears) without
    racing it, and lets it go by deleting ``hold``. Without that file the script only exports
    ``CEMAGATE_ACTIVE=1``.
    """
    script = textwrap.dedent(
        f"""\
        # Cema tests: hold the activation (run by `cema sync` before the receipt) at a gate
        gate="${{HOME:-/nonexistent}}/{GATE_DIR}"
        if [ -e "$gate/hold" ]; then
            echo "$$ $CONDA_PREFIX" >> "$gate/waiting"
            while [ -e "$gate/hold" ]; do :; done
        fi
        export CEMAGATE_ACTIVE=1
        """
    ).encode()
    return Package(
        name=name,
        version=version,
        noarch="generic",
        files=(PackageFile(path=f"etc/conda/activate.d/{name}.sh", content=script),),
    )


def bulk_package(name: str = "cemabulk", version: str = "1.0", *, files: int = 3000) -> Package:
    """A package of many small files: installing it takes long enough to be interrupted."""
    return Package(
        name=name,
        version=version,
        noarch="generic",
        files=tuple(
            PackageFile(
                path=f"share/{name}/d{i // 100:03d}/f{i:05d}.txt",
                content=f"{name} file {i}\n".encode() * 8,
            )
            for i in range(files)
        ),
    )


def _record_line(path: str, content: bytes) -> str:
    import base64

    digest = base64.urlsafe_b64encode(hashlib.sha256(content).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(content)}\n"


def pypi_dist_package(name: str, version: str, *, dist: str, module: str | None = None) -> Package:
    """A ``noarch: python`` conda package that installs the PyPI distribution ``dist``.

    Like conda-forge's ``msgpack-python`` (PyPI ``msgpack``): module ``module`` (default
    ``dist``) with ``__version__`` and ``FROM_CONDA = True``, and ``<dist>-<version>.dist-info``
    (``METADATA``, ``INSTALLER`` saying conda, ``RECORD``), as pip tools see it installed.
    """
    module = module or dist.replace("-", "_")
    info = f"{dist.replace('-', '_')}-{version}.dist-info"
    files = {
        f"{module}/__init__.py": f'__version__ = "{version}"\nFROM_CONDA = True\n'.encode(),
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n".encode(),
        f"{info}/INSTALLER": b"conda\n",
    }
    record = "".join(_record_line(p, c) for p, c in files.items()) + f"{info}/RECORD,,\n"
    files[f"{info}/RECORD"] = record.encode()
    return Package(
        name=name,
        version=version,
        build="py_0",
        noarch="python",
        depends=("python",),
        files=tuple(PackageFile(path=f"site-packages/{p}", content=c) for p, c in files.items()),
    )


def local_packages(interpreter: Path | None = None) -> list[Package]:
    """The standard local channel: python (the host's), cemademo 1.0 and 2.0, cemahello, gate."""
    return [
        python_package(interpreter),
        noarch_python_package("cemademo", "1.0"),
        noarch_python_package("cemademo", "2.0"),
        script_package("cemahello", "1.0"),
        gate_package(),
    ]


def build_local_channel(channel: Path, *, extra: Iterable[Package] = ()) -> Path:
    """Build and index the standard local channel (plus ``extra`` packages) in ``channel``."""
    return build_channel(channel, [*local_packages(), *extra])


# a manual helper: python -m tests.channel_builder DIR
if __name__ == "__main__":  # pragma: no cover
    out = build_local_channel(Path(sys.argv[1] if len(sys.argv) > 1 else "local-channel"))
    for sub in sorted(p for p in out.iterdir() if p.is_dir()):
        print(sub, sorted(os.listdir(sub)))
