"""Pydantic's errors in the catalog's own words: what the field holds, what it should hold, and "did you mean"
where a choice was misspelt ("'ofical' is not one of 'official', 'community', 'none' — did you mean 'official'?"
rather than "Input should be 'official', 'community' or 'none'")."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from mlatlas.catalog.suggest import hint

_CHOICE = re.compile(r"'((?:[^'\\]|\\.)*)'")


def short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _what(value: Any) -> str:
    """The input as a reader recognises it: a quoted text, a number, or the kind of YAML value it is."""
    if isinstance(value, dict):
        return "a mapping (field: value lines)"
    if isinstance(value, list):
        return f"a list {short(value)}" if value else "an empty list"
    if value is None:
        return "nothing (an empty value)"
    return short(value)


def _choices(err: dict[str, Any]) -> list[str]:
    return _CHOICE.findall(str(err.get("ctx", {}).get("expected", "")))


def _one_of(err: dict[str, Any]) -> str:
    choices = _choices(err)
    listed = ", ".join(repr(c) for c in choices)
    given = err["input"]
    if isinstance(given, str):
        return f"{given!r} is not one of {listed}{hint(given, choices)}"
    return f"must be one of {listed}, got {_what(given)}"


def _date(err: dict[str, Any]) -> str:
    reason = str(err.get("ctx", {}).get("error", "")).strip()
    given = err["input"]
    if isinstance(given, (str, int, float)) and not isinstance(given, bool):
        why = f" ({reason})" if reason else ""
        return f"{short(given)} is not a date{why}; write it as YYYY-MM-DD, e.g. 2017-03-09"
    return f"expected a date written as YYYY-MM-DD, got {_what(given)}"


def _expected(kind: str) -> Callable[[dict[str, Any]], str]:
    """A wrong kind of value: what the field expects, and what it got."""
    return lambda err: f"expected {kind}, got {_what(err['input'])}"


def _bound(word: str) -> Callable[[dict[str, Any]], str]:
    def message(err: dict[str, Any]) -> str:
        ctx = err.get("ctx", {})
        limit = next(iter(ctx.values()), "?")
        return f"must be {word} {limit}, got {_what(err['input'])}"

    return message


def _length(err: dict[str, Any], most: bool) -> str:
    ctx = err.get("ctx", {})
    limit = ctx.get("max_length" if most else "min_length")
    given, bound = err["input"], "at most" if most else "at least"
    if err["type"].startswith("string"):
        return f"too {'long' if most else 'short'}: {bound} {limit} characters, got {len(str(given))}"
    return f"needs {bound} {limit} item{'s' * (limit != 1)}, got {_what(given)}"


_BY_TYPE: dict[str, Callable[[dict[str, Any]], str]] = {
    "literal_error": _one_of,
    "enum": _one_of,
    "string_type": _expected("text"),
    "string_too_short": lambda e: _length(e, most=False),
    "string_too_long": lambda e: _length(e, most=True),
    "too_short": lambda e: _length(e, most=False),
    "too_long": lambda e: _length(e, most=True),
    "int_type": _expected("a whole number"),
    "int_parsing": _expected("a whole number"),
    "int_from_float": _expected("a whole number"),
    "float_type": _expected("a number"),
    "float_parsing": _expected("a number"),
    "finite_number": _expected("a finite number"),
    "bool_type": _expected("true or false"),
    "bool_parsing": _expected("true or false"),
    "list_type": _expected("a list ('[a, b]', or one '- item' per line)"),
    "dict_type": _expected("a mapping of 'field: value' lines"),
    "model_type": _expected("a mapping of 'field: value' lines"),
    "model_attributes_type": _expected("a mapping of 'field: value' lines"),
    "date_type": _date,
    "date_parsing": _date,
    "date_from_datetime_parsing": _date,
    "date_from_datetime_inexact": _date,
    "date_future": _date,
    "greater_than": _bound("greater than"),
    "greater_than_equal": _bound("at least"),
    "less_than": _bound("less than"),
    "less_than_equal": _bound("at most"),
}


def message(err: dict[str, Any], pattern_help: dict[str, str], known_fields: Iterable[str]) -> str:
    """One Pydantic error (an item of ``ValidationError.errors()``) as the line a contributor reads."""
    kind, msg = err["type"], err["msg"]
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        key = str(err["loc"][-1])
        return f"unknown field {key!r}{hint(key, known_fields)}"
    if kind == "string_pattern_mismatch":
        pattern = err.get("ctx", {}).get("pattern", "")
        return f"{short(err['input'])} is not {pattern_help.get(pattern, f'in the form {pattern}')}"
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            return msg[len(prefix):]
    if kind in _BY_TYPE:
        return _BY_TYPE[kind](err)
    # a kind not listed above: Pydantic's sentence without its "Input should be" voice, and what was given
    text = re.sub(r"^Input should be ", "should be ", msg)
    return f"{text}, got {_what(err['input'])}" if "input" in err else text
