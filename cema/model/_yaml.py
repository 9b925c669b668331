"""A small, deterministic block-style YAML writer for documents of dicts, lists and scalars."""

from __future__ import annotations

import functools
import json
import re
from typing import Any

# plain scalars that YAML 1.1 and 1.2 both read back as the same string
# (names, builds, hashes, URLs, ./relative paths; never a leading digit: it could be a number)
# (a trailing ':' would make a mapping key: `- D:` reads back as {"D": None})
_PLAIN = re.compile(r"(?:[A-Za-z_]|\.\.?/)(?:[A-Za-z0-9_.\-/:@%+=~]*[A-Za-z0-9_.\-/@%+=~])?")
_RESERVED = frozenset(["y", "n", "yes", "no", "on", "off", "true", "false", "null", "nan", "inf"])


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _printable(code: int) -> bool:
    """YAML's printable set, minus the line breaks it folds (NEL, LS, PS) and the BOM."""
    return (
        0x20 <= code <= 0x7E
        or 0xA0 <= code <= 0xD7FF
        or (0xE000 <= code <= 0xFFFD and code != 0xFEFF)
        or 0x10000 <= code <= 0x10FFFF
    ) and code not in (0x85, 0x2028, 0x2029)


def _quoted(text: str) -> str:
    """A double-quoted YAML scalar that reads back as exactly ``text``."""
    out = []
    for char in text:
        code = ord(char)
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif _printable(code):
            out.append(char)
        elif code <= 0xFF:
            out.append(f"\\x{code:02x}")
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return '"' + "".join(out) + '"'


@functools.lru_cache(maxsize=65536)
def _string(text: str) -> str:
    if _PLAIN.fullmatch(text) and text.lower() not in _RESERVED:
        return text
    return _quoted(text)


def scalar(value: Any) -> str:
    """One scalar as YAML: plain where unambiguous, else JSON-quoted (valid YAML)."""
    if type(value) is str:
        return _string(value)
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if type(value) is int:
        return str(value)
    if isinstance(value, int | float):
        return json.dumps(value)
    return _string(str(value))


def _emit(value: Any, indent: int, out: list[str]) -> None:
    pad = " " * indent
    if isinstance(value, dict):
        for key, item in value.items():
            head = f"{pad}{scalar(key)}:"
            if type(item) is list:
                if not item:
                    out.append(head + " []")
                elif all(type(x) is str for x in item):  # the common case: a list of specs
                    out.append(head)
                    out.extend(f"{pad}- {_string(x)}" for x in item)
                else:
                    out.append(head)
                    _emit(item, indent, out)
            elif type(item) is dict:
                if item:
                    out.append(head)
                    _emit(item, indent + 2, out)
                else:
                    out.append(head + " {}")
            else:
                out.append(f"{head} {scalar(item)}")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict) and item:
                lines: list[str] = []
                _emit(item, indent + 2, lines)
                out.append(f"{pad}- {lines[0][indent + 2 :]}")
                out.extend(lines[1:])
            elif isinstance(item, list) and item:
                raise TypeError("nested lists are not used in Cema documents")
            elif isinstance(item, dict | list):
                out.append(f"{pad}- {'{}' if isinstance(item, dict) else '[]'}")
            else:
                out.append(f"{pad}- {scalar(item)}")
    else:
        out.append(pad + scalar(value))


def dump(doc: dict[str, Any]) -> str:
    """``doc`` as block-style YAML, keys in the order given."""
    out: list[str] = []
    _emit(doc, 0, out)
    return "\n".join(out) + "\n"
