"""Plain-data encoding of what a sandbox child sends to its parent.

A sandbox child reads hostile files; if one of them takes it over, what it
sends back must not be able to run code in the worker. So nothing crosses
from child to parent as a pickle: every message is JSON, and results use a
small explicit encoding of plain values (None, bool, int, float, str, bytes,
list, tuple, dict) and of the frozen dataclasses the parent names
(``DocumentText``, ``FormField``, ``Widget``). The parent decodes only those
shapes, checks every dataclass field against its annotation, and treats
anything else as a crashed item (``MalformedResult``).

Encoded shapes: JSON scalars stand for themselves; a list is
``{"list": [...]}``, a tuple ``{"tuple": [...]}``, a dict
``{"dict": [[key, value], ...]}``, bytes ``{"bytes": "<base64>"}`` and a
dataclass ``{"dataclass": "Name", "fields": {...}}``.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import math
import types
import typing
from collections.abc import Iterable
from typing import Any

# Deepest nesting decoded (a DocumentText's tables are four levels deep).
MAX_DEPTH = 32


class MalformedResult(ValueError):
    """What a child sent is not a well-formed message or result."""


class UnencodableResult(TypeError):
    """A result holds a value the encoding does not carry (a function, an object)."""


def encode(value: Any, *, depth: int = 0) -> Any:
    """``value`` as JSON-ready plain data (child side)."""
    if depth > MAX_DEPTH:
        raise UnencodableResult("result nested too deeply")
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise UnencodableResult(f"non-finite number {value!r}")
        return value
    if isinstance(value, bytes):
        return {"bytes": base64.b64encode(value).decode("ascii")}
    if isinstance(value, list | tuple) and type(value) in (list, tuple):
        key = "list" if isinstance(value, list) else "tuple"
        return {key: [encode(v, depth=depth + 1) for v in value]}
    if type(value) is dict:
        return {
            "dict": [
                [encode(k, depth=depth + 1), encode(v, depth=depth + 1)] for k, v in value.items()
            ]
        }
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            "dataclass": type(value).__name__,
            "fields": {
                f.name: encode(getattr(value, f.name), depth=depth + 1)
                for f in dataclasses.fields(value)
            },
        }
    raise UnencodableResult(f"cannot send a {type(value).__name__} to the parent")


def dumps(message: Any) -> bytes:
    """One child-to-parent message (a list of plain values) as JSON bytes."""
    return json.dumps(message, ensure_ascii=False, allow_nan=False).encode("utf-8")


def loads(data: bytes) -> Any:
    """The JSON message a child sent; ``MalformedResult`` when it is not JSON."""
    try:
        return json.loads(data.decode("utf-8"), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise MalformedResult(f"not a JSON message ({type(err).__name__})") from err


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number a child may send")


class Decoder:
    """Decodes results (parent side), accepting only ``types`` as dataclasses."""

    def __init__(self, dataclass_types: Iterable[type] = ()) -> None:
        self.types = {cls.__name__: cls for cls in dataclass_types}
        self._hints: dict[type, dict[str, Any]] = {}

    def decode(self, data: Any, *, expected: Any = Any, depth: int = 0) -> Any:
        if depth > MAX_DEPTH:
            raise MalformedResult("result nested too deeply")
        value = self._decode_plain(data, depth=depth)
        _check(value, expected)
        return value

    def _decode_plain(self, data: Any, *, depth: int) -> Any:
        if data is None or isinstance(data, bool | int | float | str):
            return data
        if not isinstance(data, dict) or len(data) not in (1, 2):
            raise MalformedResult(f"unexpected {type(data).__name__} in a result")
        if set(data) == {"dataclass", "fields"}:
            return self._decode_dataclass(data["dataclass"], data["fields"], depth=depth)
        if len(data) != 1:
            raise MalformedResult("unexpected object in a result")
        ((tag, body),) = data.items()
        if tag in ("list", "tuple") and isinstance(body, list):
            items = [self.decode(v, depth=depth + 1) for v in body]
            return items if tag == "list" else tuple(items)
        if tag == "dict" and isinstance(body, list):
            pairs = {}
            for pair in body:
                if not isinstance(pair, list) or len(pair) != 2:
                    raise MalformedResult("malformed dict entry")
                key = self.decode(pair[0], depth=depth + 1)
                if not isinstance(key, str | int | float | bool | tuple) and key is not None:
                    raise MalformedResult("unhashable dict key")
                pairs[key] = self.decode(pair[1], depth=depth + 1)
            return pairs
        if tag == "bytes" and isinstance(body, str):
            try:
                return base64.b64decode(body, validate=True)
            except (binascii.Error, ValueError) as err:
                raise MalformedResult("malformed bytes") from err
        raise MalformedResult(f"unknown tag {str(tag)[:40]!r} in a result")

    def _decode_dataclass(self, name: Any, fields: Any, *, depth: int) -> Any:
        cls = self.types.get(name) if isinstance(name, str) else None
        if cls is None:
            raise MalformedResult(f"type {str(name)[:40]!r} is not accepted from a child")
        if not isinstance(fields, dict):
            raise MalformedResult(f"malformed {name}")
        hints = self._type_hints(cls)
        unknown = set(fields) - set(hints)
        if unknown:
            raise MalformedResult(f"unknown field {sorted(unknown)[0][:40]!r} of {name}")
        values = {
            key: self.decode(raw, expected=hints[key], depth=depth + 1)
            for key, raw in fields.items()
        }
        try:
            return cls(**values)
        except (TypeError, ValueError) as err:
            raise MalformedResult(f"malformed {name}: {err}") from err

    def _type_hints(self, cls: type) -> dict[str, Any]:
        if cls not in self._hints:
            hints = typing.get_type_hints(cls)
            self._hints[cls] = {f.name: hints[f.name] for f in dataclasses.fields(cls)}
        return self._hints[cls]


def _check(value: Any, expected: Any) -> None:
    """``value`` matches the annotation ``expected`` (the shapes dataclass fields use)."""
    if expected is Any:
        return
    origin = typing.get_origin(expected)
    args = typing.get_args(expected)
    if origin in (typing.Union, types.UnionType):
        for option in args:
            try:
                _check(value, option)
            except MalformedResult:
                continue
            return
        raise MalformedResult(f"{type(value).__name__} where {expected} was expected")
    if expected is type(None):
        if value is not None:
            raise MalformedResult("a value where None was expected")
        return
    if origin is tuple:
        if not isinstance(value, tuple):
            raise MalformedResult(f"{type(value).__name__} where a tuple was expected")
        if len(args) == 2 and args[1] is Ellipsis:
            for item in value:
                _check(item, args[0])
        elif args:
            if len(args) != len(value):
                raise MalformedResult(f"a tuple of {len(value)} where {len(args)} were expected")
            for item, arg in zip(value, args, strict=True):
                _check(item, arg)
        return
    if origin in (dict, list):
        if not isinstance(value, origin):
            raise MalformedResult(f"{type(value).__name__} where a {origin.__name__} was expected")
        if origin is dict and args:
            for key, item in value.items():
                _check(key, args[0])
                _check(item, args[1])
        elif args:
            for item in value:
                _check(item, args[0])
        return
    if expected is float:
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise MalformedResult(f"{type(value).__name__} where a number was expected")
        return
    if isinstance(expected, type):
        if expected is int and isinstance(value, bool):
            raise MalformedResult("a boolean where an integer was expected")
        if not isinstance(value, expected):
            raise MalformedResult(f"{type(value).__name__} where {expected.__name__} was expected")
