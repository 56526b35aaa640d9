"""Typed settings: frozen dataclasses checked against their type hints and bounds.

One generic converter (:func:`convert`) reads each field's type hint (bool,
int, float, str, Optional, ``int | str``, tuple, Literal, nested dataclass)
and the bounds declared with :func:`setting`, so a new setting is one line
and is checked like every other one. Each stage's own dataclass (the policy's
``PolicyConfig``, the quality gate's ``QualityThresholds``) declares its
bounds here and calls :func:`check_fields` from ``__post_init__``: the
``[policy]`` and ``[quality]`` tables parse straight into them, and a value
built in code is checked by the same rule as one read from a file.

Every error is a :class:`~facegate.edge.errors.ConfigError` whose message
names the key path, the bad value and what was expected. Stdlib only.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import re
import types
from dataclasses import field
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from .errors import ConfigError

__all__ = ["check_fields", "convert", "fail", "find_key_line", "printable", "setting", "to_plain", "toml_value"]


def setting(default: Any, *, ge: float | None = None, gt: float | None = None, le: float | None = None,
            lt: float | None = None, nonempty: bool = False, pattern: str | None = None,
            pattern_text: str | None = None) -> Any:
    """A dataclass field with bounds (or a string's regular expression) in its metadata, read by :func:`convert`."""
    meta = {k: v for k, v in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt)) if v is not None}
    if nonempty:
        meta["nonempty"] = True
    if pattern is not None:
        meta["pattern"] = pattern
        meta["pattern_text"] = pattern_text or f"a string matching {pattern}"
    return field(default=default, metadata=meta)


def check_fields(obj: Any, prefix: str) -> None:
    """Check (and normalise, e.g. int -> float) every field of a frozen dataclass in place.

    Called from ``__post_init__``, so the rule is the same whether the
    object comes from a TOML table or from code.
    """
    hints = get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value = convert(getattr(obj, f.name), hints[f.name], f"{prefix}.{f.name}", dict(f.metadata))
        object.__setattr__(obj, f.name, value)


def fail(key: str, value: Any, expected: str, *, got: bool = True) -> None:
    shown = printable(key)
    msg = f"{shown}: expected {expected}, got {_show(value)}" if got else f"{shown}: {expected}"
    err = ConfigError(msg)
    err.key, err.value, err.expected = key, value, expected
    raise err


def printable(text: str) -> str:
    """``text`` on one printable line: newlines, controls and invisible characters escaped."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


#: A bad value is shown up to this many characters: the message stays one readable line.
_SHOW_MAX = 80


def _show(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, dict):
        return "a table"
    text = repr(value)
    return text if len(text) <= _SHOW_MAX else text[:_SHOW_MAX - 3] + "..."


_NONE = type(None)


def _describe(tp: Any) -> str:
    """A human name for a type hint, used in 'expected ...' messages."""
    origin = get_origin(tp)
    if tp is bool:
        return "true or false"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp is str:
        return "a string"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in get_args(tp) if a is not _NONE)
    if origin is tuple:
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_describe(args[0])}"
        return f"a list of {len(args)} values"
    if dataclasses.is_dataclass(tp):
        return "a table"
    return getattr(tp, "__name__", str(tp))


def _bounds_text(meta: dict[str, Any]) -> str:
    parts = []
    if "ge" in meta and "le" in meta:
        return f" in {meta['ge']}..{meta['le']}"
    for k, word in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
        if k in meta:
            parts.append(f"{word} {meta[k]}")
    return (" " + " and ".join(parts)) if parts else ""


def convert(value: Any, tp: Any, key: str, meta: dict[str, Any] | None = None) -> Any:
    """Check ``value`` against type hint ``tp`` (and bounds in ``meta``); return it converted."""
    meta = meta or {}
    origin = get_origin(tp)

    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            fail(key or "<top>", value, "a table")
        hints = get_type_hints(tp)
        fields = {f.name: f for f in dataclasses.fields(tp)}
        for name in value:
            if name not in fields:
                path = f"{key}.{name}" if key else str(name)
                close = difflib.get_close_matches(str(name), fields, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                fail(path, value[name], f"unknown key (set to {_show(value[name])}){hint}; "
                      f"expected one of: {', '.join(fields)}", got=False)
        kwargs = {}
        for name, f in fields.items():
            if name in value:
                path = f"{key}.{name}" if key else name
                kwargs[name] = convert(value[name], hints[name], path, dict(f.metadata))
        return tp(**kwargs)

    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None:
            if _NONE in args:
                return None
            fail(key, value, _describe(tp))
        # Try the members whose kind fits; when one fits but is out of
        # bounds, its own (more precise) message is the one to show.
        first_error: ConfigError | None = None
        for arg in (a for a in args if a is not _NONE and _kind_fits(value, a)):
            try:
                return convert(value, arg, key, meta)
            except ConfigError as exc:
                first_error = first_error or exc
        if first_error is not None:
            raise first_error
        fail(key, value, _describe(tp))

    if origin is Literal:
        if value in get_args(tp) and type(value) in {type(a) for a in get_args(tp)}:
            return value
        fail(key, value, _describe(tp))

    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            fail(key, value, _describe(tp))
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(convert(v, args[0], f"{key}[{i}]", meta) for i, v in enumerate(value))
        if len(value) != len(args):
            fail(key, value, _describe(tp))
        return tuple(convert(v, a, f"{key}[{i}]", meta) for i, (v, a) in enumerate(zip(value, args)))

    if tp is bool:
        if not isinstance(value, bool):
            fail(key, value, "true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            fail(key, value, "an integer" + _bounds_text(meta))
        _check_bounds(value, key, "an integer", meta)
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            fail(key, value, "a finite number" + _bounds_text(meta))
        _check_bounds(value, key, "a number", meta)
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            fail(key, value, "a string")
        if meta.get("nonempty") and not value.strip():
            fail(key, value, "a non-empty string")
        if "pattern" in meta and not re.fullmatch(meta["pattern"], value):
            fail(key, value, meta["pattern_text"])
        return value
    raise TypeError(f"config field {key} has an unsupported type hint {tp!r}")


def _kind_fits(value: Any, tp: Any) -> bool:
    """Whether ``value`` is of the broad kind ``tp`` asks for (bounds aside)."""
    origin = get_origin(tp)
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if origin is tuple:
        return isinstance(value, (list, tuple))
    if dataclasses.is_dataclass(tp):
        return isinstance(value, dict)
    return True  # Literal and anything else: let _convert decide


def _check_bounds(value: float, key: str, kind: str, meta: dict[str, Any]) -> None:
    ok = (
        ("ge" not in meta or value >= meta["ge"])
        and ("gt" not in meta or value > meta["gt"])
        and ("le" not in meta or value <= meta["le"])
        and ("lt" not in meta or value < meta["lt"])
    )
    if not ok:
        fail(key, value, kind + _bounds_text(meta))


# --- TOML helpers -----------------------------------------------------------
_HEADER = re.compile(r"^\s*\[\s*([A-Za-z0-9_.\s\"'-]+?)\s*\]\s*(#.*)?$")


def find_key_line(text: str, key: str) -> int | None:
    """1-based line where ``key`` (a dotted path) is set, found by a cheap scan.

    Handles the usual ``[section]`` + ``name = value`` layout; falls back to
    the section header, then to any line assigning the last key part.
    """
    parts = [p for p in re.split(r"\.", re.sub(r"\[\d+\]$", "", key)) if p]
    if not parts:
        return None
    table, name = parts[:-1], parts[-1]
    assign = re.compile(rf"^\s*[\"']?{re.escape(name)}[\"']?\s*=")
    lines = text.splitlines()
    current: list[str] = []
    header_line = None
    for no, line in enumerate(lines, 1):
        m = _HEADER.match(line)
        if m and not line.lstrip().startswith("[["):
            current = [s.strip().strip("\"'") for s in m.group(1).split(".")]
            if current == parts:  # the key is itself a table
                return no
            if current == table:
                header_line = no
            continue
        if current == table and assign.match(line):
            return no
        if not current and table and re.match(rf"^\s*{re.escape('.'.join(parts))}\s*=", line):
            return no  # dotted key at top level: camera.width = 640
    if header_line is not None:
        return header_line
    for no, line in enumerate(lines, 1):
        if assign.match(line):
            return no
    return None


def to_plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if getattr(obj, f.name) is not None}
    if isinstance(obj, tuple):
        return [to_plain(v) for v in obj]
    return obj


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        # JSON string escapes are valid TOML; TOML also forbids a raw DEL
        return json.dumps(v, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")
