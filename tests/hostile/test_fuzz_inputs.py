"""A fixed-seed fuzz corpus of broken ``cema.yaml`` and ``cema.lock`` files (issue #18).

Each case is a mutation of a valid file (lines deleted or duplicated, values of the wrong type,
truncation, random bytes, deep nesting, huge numbers, aliases), run in-process through
``cema.cli.main`` with stderr captured: no exception escapes ``main``, a refusal exits 1 with
one ``error:`` line and no traceback, within a time bound, and the lock is never half written
(unchanged, or rewritten whole by a successful ``cema lock``).
"""

from __future__ import annotations

import contextlib
import io
import random
import signal
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from cema.cli import main
from cema.model.spec import current_platform

pytestmark = pytest.mark.hostile

SEED = 18
SPEC_CASES = 250
LOCK_CASES = 250
#: one command on one case; a refusal takes milliseconds, a solve of the demo env well under this
CASE_S = 20.0

WEIRD = [
    "[]",
    "{}",
    "null",
    "true",
    "-1",
    "s",
    "[[x]]",
    "[{a: [b]}]",
    "1e999",
    ".nan",
    "9" * 5000,
    '"' + "x" * 5000 + '"',
    "!!binary aGVsbG8=",
    "!!python/object:os.system ls",
    "2001-12-14",
    "*undefined",
    "&a [*a]",
    "[" * 40 + "]" * 40,
    "[" * 5000 + "]" * 5000,
    "{" * 300,
    "'unterminated",
    "\t- tab",
    "0x" + "f" * 4000,
    "~",
    "? complex\n: key",
]


def laughs(levels: int) -> str:
    lines = ['lol0: &l0 "lol"']
    for i in range(1, levels + 1):
        lines.append(f"lol{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]")
    return "\n".join(lines) + "\n"


def _scalar_lines(lines: list[str]) -> list[int]:
    return [i for i, line in enumerate(lines) if ":" in line and not line.rstrip().endswith(":")]


def mutate(text: str, rng: random.Random) -> bytes:
    """One random mutation (sometimes two) of a valid YAML text."""
    lines = text.splitlines(keepends=True)
    how = rng.randrange(13)
    if how == 0:  # delete a line (a key, a list item, a header)
        del lines[rng.randrange(len(lines))]
    elif how == 1:  # duplicate a line (a repeated key, or one list item twice)
        i = rng.randrange(len(lines))
        lines.insert(i, lines[i])
    elif how in (2, 3, 4):  # a value of the wrong type
        i = rng.choice(_scalar_lines(lines))
        key = lines[i].split(":", 1)[0]
        lines[i] = f"{key}: {rng.choice(WEIRD)}\n"
    elif how == 5:  # truncated
        return text.encode()[: rng.randrange(len(text))]
    elif how == 6:  # random bytes somewhere
        raw = bytearray(text.encode())
        at = rng.randrange(len(raw))
        raw[at:at] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 8)))
        return bytes(raw)
    elif how == 7:  # deep nesting in place of a value
        i = rng.choice(_scalar_lines(lines))
        depth = rng.choice([33, 100, 1000, 20000])
        lines[i] = f"{lines[i].split(':', 1)[0]}: {'[' * depth}{']' * depth}\n"
    elif how == 8:  # an alias bomb beside the document, used by a value
        levels = rng.choice([3, 6, 7, 9])
        i = rng.choice(_scalar_lines(lines))
        lines[i] = f"{lines[i].split(':', 1)[0]}: *l{levels}\n"
        lines.insert(0, laughs(levels).replace("lol", "x-lol"))
    elif how == 9:  # indentation broken
        i = rng.randrange(len(lines))
        lines[i] = (" " * rng.randrange(1, 4)) + lines[i] if rng.random() < 0.5 else lines[i][1:]
    elif how == 10:  # a whole document of the wrong shape
        return rng.choice(
            [b"", b"# nothing\n", b"null\n", b"- a\n- b\n", b"42\n", b"---\na: 1\n---\nb: 2\n"]
        )
    elif how == 11:  # a key renamed (a typo, or a non-string key)
        i = rng.choice(_scalar_lines(lines))
        key, value = lines[i].split(":", 1)
        new = rng.choice(["1", "null", "true", "[a]", key.rstrip() + "x", "'" + key.strip()])
        lines[i] = " " * (len(key) - len(key.lstrip())) + new + ":" + value
    else:  # a huge number where a value was
        i = rng.choice(_scalar_lines(lines))
        digits = rng.choice([20, 400, 5000, 100000])
        lines[i] = f"{lines[i].split(':', 1)[0]}: {'7' * digits}\n"
    out = "".join(lines)
    if rng.random() < 0.15:
        return mutate(out, rng) if out.strip() else out.encode()
    return out.encode()


@contextlib.contextmanager
def deadline(seconds: float, what: str) -> Iterator[None]:
    """Fail (instead of blocking the suite) when the body runs longer than ``seconds``."""

    def expired(signum: int, frame: object) -> None:
        raise TimeoutError(f"{what} ran longer than {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run(*argv: str) -> tuple[int, str, float]:
    """``cema ARGV`` in this process: exit code, stderr, seconds (nothing may escape main)."""
    err = io.StringIO()
    start = time.monotonic()
    with (
        deadline(CASE_S, f"cema {' '.join(argv)}"),
        contextlib.redirect_stderr(err),
        contextlib.redirect_stdout(io.StringIO()),
    ):
        code = main(list(argv))
    return code, err.getvalue(), time.monotonic() - start


class Corpus:
    def __init__(self) -> None:
        self.cases = 0
        self.runs = 0
        self.refused = 0
        self.failures: list[str] = []

    def check(self, label: str, data: bytes, argv: list[str], lock: Path, before: bytes | None):
        self.runs += 1
        try:
            code, err, _ = run(*argv)
        except BaseException as exc:  # an escape from main is the finding
            where = traceback.extract_tb(exc.__traceback__)[-1]
            self.failures.append(
                f"{label} {argv[0]}: {type(exc).__name__}: {exc!s:.200}"
                f" ({Path(where.filename).name}:{where.lineno}); input {data[:80]!r}"
            )
            return None
        problems = []
        if "Traceback" in err:
            problems.append("a traceback")
        if code not in (0, 1):
            problems.append(f"exit {code}")
        if code == 1 and not err.startswith("error: "):
            problems.append(f"stderr {err[:120]!r}")
        after = lock.read_bytes() if lock.is_file() else None
        if code != 0 and after != before:
            problems.append("the lock changed on a refusal")
        leftovers = [p.name for p in lock.parent.iterdir() if p.name.endswith(".tmp")]
        if leftovers:
            problems.append(f"temp files {leftovers}")
        if problems:
            self.failures.append(f"{label} {argv[0]}: {', '.join(problems)}; input {data[:80]!r}")
        self.refused += code == 1
        return code


@pytest.fixture(scope="module")
def valid_project(
    local_channel: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, bytes, bytes]]:
    """A folder with a valid ``cema.yaml`` and its ``cema.lock`` (texts kept), CEMA_HOME set."""
    root = tmp_path_factory.mktemp("fuzz")
    folder = root / "project"
    folder.mkdir()
    spec = (
        "version: 1\n"
        f'channels: ["{local_channel}"]\n'
        "platforms: [" + current_platform() + "]\n"
        "environments:\n"
        "  demo:\n"
        "    python: '3'\n"
        "    conda: [python, cemademo, cemahello]\n"
        "    variables: {A: '1'}\n"
        "  tool:\n"
        "    kind: conda\n"
        "    conda:\n"
        "      - cemahello\n"
        "      - {name: cemademo, optional: true}\n"
    )
    (folder / "cema.yaml").write_text(spec)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CEMA_HOME", str(root / "store"))
        code, err, _ = run("lock", "--project", str(folder))
        assert code == 0, err
        yield folder, spec.encode(), (folder / "cema.lock").read_bytes()


def _report(corpus: Corpus, what: str) -> None:
    print(f"{what}: {corpus.cases} cases, {corpus.runs} runs, {corpus.refused} refused")
    assert not corpus.failures, f"{len(corpus.failures)} failures:\n" + "\n".join(corpus.failures)


def test_fuzzed_specs_never_crash_hang_or_damage_the_lock(valid_project) -> None:
    folder, spec, good_lock = valid_project
    rng = random.Random(SEED)
    corpus = Corpus()
    lock = folder / "cema.lock"
    for n in range(SPEC_CASES):
        data = mutate(spec.decode(), rng)
        (folder / "cema.yaml").write_bytes(data)
        lock.write_bytes(good_lock)
        corpus.cases += 1
        # a mutation that is still a valid spec may re-lock (that is a success, not a finding)
        code = corpus.check(f"spec#{n}", data, ["lock", "--project", str(folder)], lock, good_lock)
        if code == 0:
            continue
        for argv in (["plan"], ["sync", "--frozen"]):
            corpus.check(f"spec#{n}", data, [*argv, "--project", str(folder)], lock, good_lock)
    (folder / "cema.yaml").write_bytes(spec)
    lock.write_bytes(good_lock)
    _report(corpus, "cema.yaml")
    assert corpus.cases >= 250
    assert corpus.refused > corpus.cases  # most mutations are refused by all three commands


def test_fuzzed_locks_never_crash_hang_or_get_rewritten(valid_project) -> None:
    folder, _, good_lock = valid_project
    rng = random.Random(SEED + 1)
    corpus = Corpus()
    lock = folder / "cema.lock"
    for n in range(LOCK_CASES):
        data = mutate(good_lock.decode(), rng)
        lock.write_bytes(data)
        corpus.cases += 1
        # a mutation the lock still accepts (a comment, a blank line) plans like the good one
        code = corpus.check(f"lock#{n}", data, ["plan", "--project", str(folder)], lock, data)
        if code == 0:
            continue
        corpus.check(f"lock#{n}", data, ["sync", "--frozen", "--project", str(folder)], lock, data)
    lock.write_bytes(good_lock)
    _report(corpus, "cema.lock")
    assert corpus.cases >= 250
    assert corpus.refused > corpus.cases  # most mutations are refused by plan and sync


def test_the_corpus_is_fixed(valid_project) -> None:
    # the same seed gives the same cases: a finding can be replayed by its number
    _, spec, _ = valid_project
    first = [mutate(spec.decode(), random.Random(SEED)) for _ in range(3)]
    again = [mutate(spec.decode(), random.Random(SEED)) for _ in range(3)]
    assert first == again
    assert yaml.safe_load(spec)["environments"]
