"""The deterministic block-style YAML writer, and the guarded reader of every YAML file."""

from __future__ import annotations

import functools
import json
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import yaml

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


# --- reading ----------------------------------------------------------------------------------

#: deeper than any Cema document (about 7): refused before the recursive composer sees it
MAX_DEPTH = 32
#: values that aliases may add beyond the document's own (a "billion laughs" adds 10**9)
MAX_EXPANSION = 1_000_000
#: a longer plain number is refused (Python reads at most 4,300 digits; Cema needs a dozen)
MAX_DIGITS = 100
_NUMBER = re.compile(r"[-+]?\.?[0-9][0-9a-zA-Z_:.+-]*")  # ints of any base, floats


class Refused(ValueError):
    """A YAML text Cema will not build objects from: why, the 1-based line and the key path."""

    def __init__(self, reason: str, line: int | None, key: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.line = line
        self.key = key


def _refuse(reason: str, event: Any, stack: list[list[Any]]) -> Refused:
    key = ""
    for frame in stack[1:]:
        part = frame[3]
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    mark = getattr(event, "start_mark", None)
    return Refused(reason, mark.line + 1 if mark is not None else None, key)


def _check_events(events: Any) -> None:
    """One pass over the parser's events: depth, alias expansion and long integers.

    The size each anchor stands for is counted as its node closes, so an alias bomb costs
    one addition per alias here instead of 10**9 values in every later walk of the data.
    Each open collection is ``[expanded size, anchor, is a mapping, key or index, at a key]``.
    """
    import yaml

    sizes: dict[str, int] = {}
    stack: list[list[Any]] = [[0, None, False, -1, False]]
    own = 0
    for event in events:
        if not isinstance(event, yaml.NodeEvent | yaml.CollectionEndEvent):
            continue
        frame = stack[-1]
        if isinstance(event, yaml.NodeEvent):  # a key or value of ``frame``
            if frame[2]:
                frame[4] = not frame[4]
                if frame[4]:
                    frame[3] = getattr(event, "value", "?")
            else:
                frame[3] += 1
        size = 1
        if isinstance(event, yaml.AliasEvent):
            if any(anchor == event.anchor for _, anchor, *_ in stack):
                raise _refuse(f"the alias *{event.anchor} refers to itself", event, stack)
            size = sizes.get(str(event.anchor), 1)  # an undefined one fails when composed
        elif isinstance(event, yaml.ScalarEvent):
            own += 1
            value = event.value
            if not event.style and len(value) > MAX_DIGITS and _NUMBER.fullmatch(value):
                raise _refuse(
                    f"a number of {len(value)} digits is longer than any Cema value", event, stack
                )
            if event.anchor is not None:
                sizes[event.anchor] = 1
        elif isinstance(event, yaml.CollectionStartEvent):
            own += 1
            stack.append([1, event.anchor, isinstance(event, yaml.MappingStartEvent), -1, False])
            if len(stack) > MAX_DEPTH + 1:
                raise _refuse(f"the values nest more than {MAX_DEPTH} levels deep", event, stack)
            continue
        else:  # the end of a collection
            size, anchor, *_ = stack.pop()
            if anchor is not None:
                sizes[anchor] = size
        stack[-1][0] += size
        if stack[-1][0] > own + MAX_EXPANSION:
            raise _refuse(
                f"its aliases expand to more than {MAX_EXPANSION:,} values (an alias bomb)",
                event,
                stack,
            )


def load(text: str) -> tuple[yaml.Node | None, Any]:
    """The node tree (for line numbers) and the data of one YAML document, parsed safely.

    Raises ``Refused`` for what would hang or crash later (alias bombs, deep nesting, integers
    too long to read) before any object is built, and ``yaml.YAMLError`` for broken YAML.
    """
    import yaml

    # libyaml parses big files much faster; fall back to pure Python without it
    loader_class: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    _check_events(yaml.parse(text, Loader=loader_class))
    loader = loader_class(text)
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    except (ValueError, OverflowError, RecursionError) as exc:
        raise Refused(f"a value cannot be read ({str(exc)[:200]})", None) from None
    finally:
        loader.dispose()
    return root, data
