"""Regenerate ``cema/data/conda_pypi.json``, the conda-forge → PyPI names that differ.

Usage: python bench/conda_pypi_names.py [SOURCE] [--commit SHA]

SOURCE is parselmouth's ``files/compressed_mapping.json`` (a path, or a URL; default: the file
at ``--commit`` of https://github.com/prefix-dev/parselmouth). That file maps every conda-forge
package name to the PyPI name of what it installs (or null); pixi reads the same data. Only the
entries whose names differ once canonicalized (PEP 503) are kept: Cema maps every other conda
name to itself. The output is written sorted, one entry a line, with the source, commit and the
BSD-3-Clause licence of parselmouth (Copyright (c) 2023, prefix.dev GmbH) in its ``about``.
This is data tooling kept beside the benchmarks; Cema never downloads the mapping at run time.
"""

from __future__ import annotations

import argparse
import json
import urllib.request
from pathlib import Path

from packaging.utils import canonicalize_name

REPO = "https://github.com/prefix-dev/parselmouth"
RAW = "https://raw.githubusercontent.com/prefix-dev/parselmouth/{commit}/files/compressed_mapping.json"
OUT = Path(__file__).resolve().parents[1] / "cema" / "data" / "conda_pypi.json"
LICENSE = """\
BSD 3-Clause License

Copyright (c) 2023, prefix.dev GmbH

Redistribution and use in source and binary forms, with or without
modification, are permitted provided that the following conditions are met:

1. Redistributions of source code must retain the above copyright notice, this
   list of conditions and the following disclaimer.

2. Redistributions in binary form must reproduce the above copyright notice,
   this list of conditions and the following disclaimer in the documentation
   and/or other materials provided with the distribution.

3. Neither the name of the copyright holder nor the names of its
   contributors may be used to endorse or promote products derived from
   this software without specific prior written permission.

THIS SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS AND CONTRIBUTORS "AS IS"
AND ANY EXPRESS OR IMPLIED WARRANTIES, INCLUDING, BUT NOT LIMITED TO, THE
IMPLIED WARRANTIES OF MERCHANTABILITY AND FITNESS FOR A PARTICULAR PURPOSE ARE
DISCLAIMED. IN NO EVENT SHALL THE COPYRIGHT HOLDER OR CONTRIBUTORS BE LIABLE
FOR ANY DIRECT, INDIRECT, INCIDENTAL, SPECIAL, EXEMPLARY, OR CONSEQUENTIAL
DAMAGES (INCLUDING, BUT NOT LIMITED TO, PROCUREMENT OF SUBSTITUTE GOODS OR
SERVICES; LOSS OF USE, DATA, OR PROFITS; OR BUSINESS INTERRUPTION) HOWEVER
CAUSED AND ON ANY THEORY OF LIABILITY, WHETHER IN CONTRACT, STRICT LIABILITY,
OR TORT (INCLUDING NEGLIGENCE OR OTHERWISE) ARISING IN ANY WAY OUT OF THE USE
OF THIS SOFTWARE, EVEN IF ADVISED OF THE POSSIBILITY OF SUCH DAMAGE.
"""


def differing(mapping: dict[str, str | None]) -> dict[str, str]:
    """The entries whose conda name is not already the PyPI name (null entries dropped)."""
    return {
        conda: pypi
        for conda, pypi in sorted(mapping.items())
        if pypi is not None and canonicalize_name(conda) != canonicalize_name(pypi)
    }


def render(names: dict[str, str], *, source: str, commit: str) -> str:
    """The JSON text: an ``about`` block, then one ``"conda": "pypi"`` entry a line."""
    about = {
        "source": source,
        "commit": commit,
        "license": LICENSE,
        "rule": "a conda name not listed here is its own PyPI name (canonicalized, PEP 503)",
        "regenerate": "python bench/conda_pypi_names.py --commit SHA",
    }
    lines = [f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in names.items()]
    return (
        '{"about": '
        + json.dumps(about, sort_keys=True)
        + ',\n"names": {\n'
        + ",\n".join(lines)
        + "\n}}\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", nargs="?", help="a compressed_mapping.json path or URL")
    parser.add_argument("--commit", default="main", help="the parselmouth commit to read")
    parser.add_argument("--output", type=Path, default=OUT)
    args = parser.parse_args()
    source = args.source or RAW.format(commit=args.commit)
    if source.startswith(("https://", "http://")):
        with urllib.request.urlopen(source, timeout=60) as response:
            mapping = json.load(response)
    else:
        mapping = json.loads(Path(source).read_text(encoding="utf-8"))
    names = differing(mapping)
    cited = f"{REPO}/blob/{args.commit}/files/compressed_mapping.json"
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(render(names, source=cited, commit=args.commit), encoding="utf-8")
    print(f"{args.output}: {len(names)} of {len(mapping)} names differ")


if __name__ == "__main__":
    main()
