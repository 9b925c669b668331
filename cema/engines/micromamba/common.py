"""What both script renderers share: quoting, secrets, explicit files, receipts."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from cema.model.lock import CondaRecord, LockedPlatform, PipRecord
from cema.model.receipt import Receipt
from cema.model.spec import conda_name
from cema.model.urls import URL_TOKEN, URL_USERINFO

Shell = Literal["bash", "powershell"]
SHELLS: tuple[Shell, ...] = ("bash", "powershell")
ENGINE_NAME = "micromamba"
#: micromamba keeps its own package cache here: its cache layout is not rattler's
MICROMAMBA_ROOT = "micromamba"
#: the line the script prints when an env is ready (the engine counts progress with it)
DONE_MARKER = "==> ready "

# --- what the renderer needs of a resolved env (apply.Resolved fits) -----------------------


class InterpreterLike(Protocol):
    """A venv's base interpreter."""

    @property
    def path(self) -> Path:
        """Its executable."""
        ...

    @property
    def version(self) -> str:
        """Its version, ``3.11.9``."""
        ...


class ResolvedEnv(Protocol):
    """One env's locked content on this machine and its prefix address."""

    @property
    def env(self) -> str:
        """The env's name."""
        ...

    @property
    def address(self) -> str:
        """Its prefix address in the store."""
        ...

    @property
    def content(self) -> LockedPlatform:
        """Its locked content for this platform."""
        ...

    @property
    def interpreter(self) -> InterpreterLike | None:
        """The base interpreter of a venv (None for conda envs)."""
        ...

    @property
    def link(self) -> str:
        """``hardlink`` (files shared with the package caches) or ``copy``."""
        ...


@dataclass(frozen=True, kw_only=True, slots=True)
class Script:
    """A rendered script and the secrets its environment must provide when it runs."""

    shell: Shell
    text: str
    #: environment variable → value; never written into ``text``
    secrets: Mapping[str, str] = field(default_factory=dict)
    #: environment variable → what it must hold (for the header and the error message)
    variables: Mapping[str, str] = field(default_factory=dict)


# --- secrets: credentials in URLs become environment variables -----------------------------


@dataclass(frozen=True, slots=True)
class _Var:
    """A reference to an environment variable inside a rendered word."""

    name: str


_Part = str | _Var


class _Secrets:
    """Assigns one environment variable per distinct credential found in URLs."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.descriptions: dict[str, str] = {}
        self._by_secret: dict[tuple[str, str], str] = {}

    def _var(self, kind: str, secret: str, where: str) -> _Var:
        key = (kind, secret)
        if key not in self._by_secret:
            count = sum(1 for k in self._by_secret if k[0] == kind) + 1
            name = f"CEMA_CHANNEL_{kind}_{count}"
            self._by_secret[key] = name
            self.values[name] = secret
            what = "user:password" if kind == "AUTH" else "token"
            self.descriptions[name] = f"the {what} for {where}"
        return _Var(self._by_secret[key])

    def split(self, text: str) -> list[_Part]:
        """``text`` as literal parts and variable references (no credential stays literal)."""
        parts: list[_Part] = []
        rest = text
        while True:
            found = [
                m for m in (URL_USERINFO.search(rest), URL_TOKEN.search(rest)) if m is not None
            ]
            if not found:
                break
            match = min(found, key=lambda m: m.start())
            at = len(text) - len(rest) + match.start()
            url = text[text.rfind(" ", 0, at) + 1 :]  # the whole URL, for its description
            if match.re is URL_USERINFO:
                var = self._var("AUTH", match["secret"], _where(url))
                parts += [rest[: match.start()] + match["scheme"], var, "@"]
            else:
                var = self._var("TOKEN", match["secret"], _where(url))
                parts += [rest[: match.start()] + "/t/", var, "/"]
            rest = rest[match.end() :]
        parts.append(rest)
        merged: list[_Part] = []
        for part in parts:
            if isinstance(part, str) and merged and isinstance(merged[-1], str):
                merged[-1] += part
            elif part != "":
                merged.append(part)
        return merged


def _where(url: str) -> str:
    """``scheme://host`` of ``url``, in plain characters (it lands in comments and messages)."""
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0].rsplit("@", 1)[-1]
    return re.sub(r"[^A-Za-z0-9:/._-]", "?", f"{scheme}://{host}" if rest else scheme)


# --- quoting -----------------------------------------------------------------------------


def bash_quote(text: str) -> str:
    """``text`` as one bash word, taken literally (single quotes; ``'`` as ``'\\''``)."""
    return "'" + text.replace("'", "'\\''") + "'"


#: PowerShell treats the typographic single quotes as quotes too: double every one of them
_PS_QUOTES = re.compile("['\u2018\u2019\u201a\u201b]")


def powershell_quote(text: str) -> str:
    """``text`` as a literal PowerShell string (single quotes, each quote character doubled)."""
    return "'" + _PS_QUOTES.sub(lambda m: m.group(0) * 2, text) + "'"


def _bash_word(parts: Sequence[_Part]) -> str:
    return "".join(f'"${{{p.name}}}"' if isinstance(p, _Var) else bash_quote(p) for p in parts)


def _ps_word(parts: Sequence[_Part]) -> str:
    rendered = [f"$env:{p.name}" if isinstance(p, _Var) else powershell_quote(p) for p in parts]
    return rendered[0] if len(rendered) == 1 else "(" + " + ".join(rendered) + ")"


# --- content ------------------------------------------------------------------------------


def _dep_name(spec: str) -> str:
    return conda_name(spec)


def install_order(records: Iterable[CondaRecord]) -> list[CondaRecord]:
    """Records with dependencies first (by name, ties alphabetical): link scripts need them."""
    by_name = {r.name: r for r in records}
    deps = {
        n: {d for d in map(_dep_name, r.depends) if d in by_name and d != n}
        for n, r in by_name.items()
    }
    out: list[CondaRecord] = []
    done: set[str] = set()
    while len(done) < len(by_name):
        ready = sorted(n for n in by_name if n not in done and deps[n] <= done)
        if not ready:  # a cycle: take the rest alphabetically
            ready = sorted(n for n in by_name if n not in done)[:1]
        for name in ready:
            done.add(name)
            out.append(by_name[name])
    return out


def explicit_lines(records: Iterable[CondaRecord], *, platform: str) -> list[str]:
    """micromamba's explicit file (credentials left in; the renderer swaps them for variables)."""
    return [
        f"# platform: {platform}",
        "@EXPLICIT",
        *(
            f"{r.url}#sha256:{r.sha256}" if r.sha256 else f"{r.url}#{r.md5}"
            for r in install_order(records)
        ),
    ]


def pip_lines(records: Iterable[PipRecord]) -> list[str]:
    """The hashed requirements file of the pip layer (installed with ``--no-deps``)."""
    return [f"{r.name} @ {r.url} --hash=sha256:{r.sha256}" for r in records]


#: what makes micromamba and uv copy files instead of hard-linking them from their caches
MAMBA_COPY = " --always-copy"
UV_COPY = " --link-mode copy"


def receipt_for(item: ResolvedEnv, *, created: float) -> Receipt:
    """The receipt the script writes last (same JSON as the embedded engine's)."""
    return Receipt.of(
        item.content,
        address=item.address,
        interpreter=item.interpreter.version if item.interpreter else None,
        engine=ENGINE_NAME,
        created=created,
        link=item.link,
    )


def _python_in(prefix_rel: str, content: LockedPlatform, sep: str) -> str:
    windows = content.platform.startswith("win")
    if not windows:
        return sep.join([prefix_rel, "bin", "python"])
    if content.kind == "venv":
        return sep.join([prefix_rel, "Scripts", "python.exe"])
    return sep.join([prefix_rel, "python.exe"])
