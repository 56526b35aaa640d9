"""Properties of the config parser: any value at any key is either taken or refused in one line naming the key."""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from facegate.edge.config import Config
from facegate.edge.errors import ConfigError
from facegate.edge.settings import printable, toml_value

SECTIONS = {s.name: s.default_factory() for s in dataclasses.fields(Config)}  # type: ignore[misc]
FIELDS = [(name, f) for name, section in SECTIONS.items() for f in dataclasses.fields(section)]
KEYS = [f"{name}.{f.name}" for name, f in FIELDS]

#: Everything TOML can hold: scalars of every kind (datetimes too), arrays and tables of them.
SCALARS = st.one_of(st.booleans(), st.integers(-(1 << 63), (1 << 63) - 1), st.floats(), st.text(max_size=12),
                    st.datetimes(), st.dates(), st.times())
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=5), inner, max_size=3)),
                      max_leaves=6)
MANY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def refusal(data: dict) -> ConfigError | None:
    """None if ``data`` is a valid config; else its ConfigError, checked to be one printable line naming its key."""
    try:
        Config.from_dict(data)
    except ConfigError as exc:
        text = str(exc)
        assert text.isprintable(), text  # one line: no newline, no control or invisible character
        assert text.startswith(printable(exc.key) + ": "), (text, exc.key)
        assert isinstance(exc, ValueError)
        return exc
    return None


def _bounds_hold(value, meta) -> bool:
    return (("ge" not in meta or value >= meta["ge"]) and ("gt" not in meta or value > meta["gt"])
            and ("le" not in meta or value <= meta["le"]) and ("lt" not in meta or value < meta["lt"]))


@MANY
@given(st.sampled_from(range(len(FIELDS))), VALUES)
def test_any_value_at_a_known_key_is_taken_within_its_type_and_bounds_or_refused_naming_a_key(i, value):
    section, f = FIELDS[i]
    exc = refusal({section: {f.name: value}})
    if exc is not None:
        assert re.sub(r"\[\d+\]$", "", exc.key) in KEYS  # this key (or its item), or a cross-field rule's other key
        return
    taken = getattr(getattr(Config.from_dict({section: {f.name: value}}), section), f.name)
    if isinstance(taken, (int, float)) and not isinstance(taken, bool):
        assert math.isfinite(taken) and _bounds_hold(taken, f.metadata), (section, f.name, taken)
    assert taken == value or (isinstance(value, list) and tuple(value) == taken)


@MANY
@given(st.sampled_from([*SECTIONS, None]), st.text(max_size=12), VALUES)
def test_an_unknown_key_anywhere_is_refused_naming_it(section, key, value):
    known = {f.name for f in dataclasses.fields(SECTIONS[section])} if section else set(SECTIONS)
    if key in known:
        return
    exc = refusal({section: {key: value}} if section else {key: value})
    assert exc is not None and "unknown key" in str(exc)
    assert exc.key == (f"{section}.{key}" if section else key)


@MANY
@given(st.sampled_from(range(len(FIELDS))), VALUES)
def test_wrong_values_in_a_file_are_refused_with_file_line_and_key(tmp_path_factory, i, value):
    section, f = FIELDS[i]
    try:
        line = f"{f.name} = {toml_value(value)}"
    except TypeError:  # a value TOML cannot spell inline (a table, a date)
        return
    path = tmp_path_factory.getbasetemp() / "prop.toml"
    path.write_text(f"# door\n[{section}]\n{line}\n")
    try:
        Config.load(path)
    except ConfigError as exc:
        text = str(exc)
        assert text.isprintable() and text.startswith(f"{path}:"), text
        if getattr(exc, "key", None) == f"{section}.{f.name}":
            assert text.startswith(f"{path}:3: {section}.{f.name}: "), text


@MANY
@given(st.text(max_size=200))
def test_any_text_as_a_config_file_is_a_config_or_one_line(tmp_path_factory, text):
    path = tmp_path_factory.getbasetemp() / "text.toml"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    try:
        Config.load(path)
    except ConfigError as exc:
        assert str(exc).isprintable() and str(exc).startswith(str(path)), str(exc)


def _valid_value(f: dataclasses.Field) -> st.SearchStrategy:
    hint = typing.get_type_hints(type(SECTIONS[next(n for n, g in FIELDS if g is f)]))[f.name]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    kind = hint
    meta = f.metadata
    if typing.get_origin(kind) is typing.Literal:
        return st.sampled_from(typing.get_args(kind))
    if typing.get_origin(kind) is tuple and typing.get_origin(typing.get_args(kind)[0]) is typing.Literal:
        return st.lists(st.sampled_from(typing.get_args(typing.get_args(kind)[0])), min_size=1, unique=True)
    if kind is bool:
        return st.booleans()
    if kind is int:
        return st.integers(int(meta.get("ge", meta.get("gt", -1) + 1)), int(meta.get("le", meta.get("lt", 10**6) - 1)))
    if kind is float:
        lo, hi = meta.get("ge", meta.get("gt", -1e6)), meta.get("le", meta.get("lt", 1e6))
        return st.floats(lo, hi, exclude_min="gt" in meta, exclude_max="lt" in meta)
    if "pattern" in meta:  # a format (an MQTT topic, a client id): valid strings are those it matches
        return st.from_regex(meta["pattern"], fullmatch=True).filter(lambda v: len(v) <= 40)
    return st.text(st.characters(codec="utf-8"), min_size=1, max_size=10).filter(str.strip)


@MANY
@given(st.data())
def test_valid_values_are_taken_and_survive_a_round_trip_through_toml(tmp_path_factory, data):
    section, f = data.draw(st.sampled_from(FIELDS))
    value = data.draw(_valid_value(f))
    exc = refusal({section: {f.name: value}})
    if exc is not None:  # only a rule across fields may refuse a value within its own type and bounds
        others = [k for k in KEYS if k != f"{section}.{f.name}"]
        assert exc.key != f"{section}.{f.name}" or any(k in str(exc) for k in others), str(exc)
        return
    cfg = Config.from_dict({section: {f.name: value}})
    path = tmp_path_factory.getbasetemp() / "round.toml"
    path.write_text(cfg.to_toml(), encoding="utf-8")
    assert Config.load(path) == cfg
