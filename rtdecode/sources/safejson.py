"""JSON from the network, parsed only when it is small and shallow.

`loads(raw, max_bytes, max_depth)` refuses a document over `max_bytes` or nested deeper than
`max_depth` (brackets outside strings, counted before `json.loads`, whose recursion a header of
100,000 `[` would exhaust). NaN, Infinity and 1e999 parse (our own stats carry NaN for "no data
yet"), so numbers are used only through the field checkers, which refuse them. Field checkers (`integer`, `number`, `string`) type- and range-check a value of the parsed
object. Every failure is a WireError (or the subclass given) with a fixed `reason`.
"""

from __future__ import annotations

import json
import math
import re

import numpy as np

from rtdecode.errors import WireError

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_OPEN = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


def _short(v) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:60] + "..."


def depth(raw: bytes) -> int:
    """The deepest bracket nesting of a JSON text, ignoring brackets inside strings."""
    if raw.count(b"[") + raw.count(b"{") <= 1:
        return int(b"[" in raw or b"{" in raw)
    bare = _STRING.sub(b'""', raw)
    a = np.frombuffer(bare, np.uint8)
    step = np.zeros(a.size, np.int32)
    step[(a == ord("[")) | (a == ord("{"))] = 1
    step[(a == ord("]")) | (a == ord("}"))] = -1
    if not step.any():
        return 0
    return int(np.cumsum(step).max())


def loads(raw: bytes, max_bytes: int, max_depth: int, what: str, error=WireError):
    """Parse `raw` (UTF-8 JSON) after the size and depth checks; `error` raised with a reason."""
    if len(raw) > max_bytes:
        raise error(f"{what}: {len(raw)} bytes, over the {max_bytes}-byte limit", reason="too_large")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise error(f"{what} is not UTF-8 JSON (bad UTF-8)", reason="not_utf8") from None
    # the nesting cannot exceed the number of opening brackets: count them first (C speed), walk only
    # when there are more than the limit (a per-channel ZMQ Interface header has 2 of 8 allowed)
    d = 0 if raw.count(b"[") + raw.count(b"{") <= max_depth else depth(raw)
    if d > max_depth:
        raise error(f"{what}: JSON nested {d} deep, over the limit of {max_depth}", reason="too_deep")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise error(f"{what} is not UTF-8 JSON ({str(exc)[:80]})", reason="not_json") from None


def integer(d: dict, key: str, where: str, lo: int = 0, hi: int = 2**53, error=WireError,
            default=None, required: bool = True) -> int:
    """d[key] as an int in [lo, hi] (bool is not an int); `default` when absent and not required."""
    if key not in d and not required:
        return default
    v = d.get(key)
    if not isinstance(v, int) or isinstance(v, bool):
        raise error(f"{where}: '{key}' must be an integer, got {_short(v)}", reason="field")
    if not lo <= v <= hi:
        raise error(f"{where}: '{key}' = {_short(v)} is out of range [{lo}, {hi}]", reason="field")
    return v


def number(d: dict, key: str, where: str, lo: float = -math.inf, hi: float = math.inf, error=WireError,
           default=None, required: bool = True) -> float:
    """d[key] as a finite float in [lo, hi]."""
    if key not in d and not required:
        return default
    v = d.get(key)
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        raise error(f"{where}: '{key}' must be a number, got {_short(v)}", reason="field")
    try:
        f = float(v)
    except OverflowError:
        raise error(f"{where}: '{key}' is too large", reason="field") from None
    if not math.isfinite(f) or not lo <= f <= hi:
        raise error(f"{where}: '{key}' = {_short(v)} is not finite or out of range [{lo}, {hi}]", reason="field")
    return f


def string(d: dict, key: str, where: str, max_len: int = 256, error=WireError, default=None,
           required: bool = True) -> str:
    """d[key] as a str of at most `max_len` characters."""
    if key not in d and not required:
        return default
    v = d.get(key)
    if not isinstance(v, str):
        raise error(f"{where}: '{key}' must be a string, got {_short(v)}", reason="field")
    if len(v) > max_len:
        raise error(f"{where}: '{key}' is {len(v)} characters, over the limit of {max_len}", reason="field")
    return v
