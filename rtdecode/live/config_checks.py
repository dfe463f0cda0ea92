"""The checks of the rig file's typed model (rtdecode.live.config) and the one-line errors they give.

Every check raises `problem(message)`; `config_error` prints it after the key path, e.g.
`source.protocol: 'zmq' is not one of rtframe, openephys, eventbroadcaster`.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError, WrapValidator, model_validator
from pydantic_core import PydanticCustomError

from rtdecode.errors import ConfigError
from rtdecode.sources.address import check_endpoint


# ---------------------------------------------------------------- our checks, our messages
# Every check below raises `problem(message)`; `config_error` prints it after the key path. The
# messages are ours, never rewritten from pydantic's.

def problem(message: str) -> PydanticCustomError:
    return PydanticCustomError("rtdecode", "{message}", {"message": message})


def OneOf(names) -> BeforeValidator:
    """A value that must be one of `names`: a registry (read when checking, so a name registered
    later counts) or a tuple."""

    def check(value):
        if not isinstance(value, str) or value not in names:
            raise problem(f"{value!r} is not one of {', '.join(names)}")
        return value

    check.names = names  # what rtdecode.live.config_docs lists
    return BeforeValidator(check)


def Range(ge=None, gt=None, le=None, lt=None) -> WrapValidator:
    """A number within bounds; the message gives the allowed interval, e.g. `(0, 5)` or `[1, 65535]`."""
    lo, hi = (ge if ge is not None else gt), (le if le is not None else lt)
    if lo is not None and hi is not None:
        allowed = f"{'[' if ge is not None else '('}{lo:g}, {hi:g}{']' if le is not None else ')'}"
    elif lo is not None:
        allowed = f"{'>=' if ge is not None else '>'} {lo:g}"
    else:
        allowed = f"{'<=' if le is not None else '<'} {hi:g}"

    def check(value, handler):
        v = handler(value)  # the type check first (int, float)
        ok = ((ge is None or v >= ge) and (gt is None or v > gt) and (le is None or v <= le)
              and (lt is None or v < lt))
        if not ok:
            raise problem(f"{value!r} is out of range; allowed: {allowed}")
        return v

    check.allowed = allowed  # what rtdecode.live.config_docs lists
    return WrapValidator(check)


def _non_empty(value, handler):
    v = handler(value)
    if len(v) == 0:
        raise problem("must not be empty")
    return v


NonEmpty = WrapValidator(_non_empty)


def endpoint(value):
    try:
        return check_endpoint(value)
    except ConfigError as exc:
        raise problem(str(exc)) from None


def one_or_many(v):
    """A value or a list of them -> a list (a text value is one)."""
    return [v] if isinstance(v, str) else v


Endpoint = Annotated[str, BeforeValidator(endpoint)]
Port = Annotated[int, Range(ge=1, le=65535)]
Name = Annotated[str, NonEmpty]


class Section(BaseModel):
    """A section of the rig file: known keys only, required keys present (checked here, before the
    values, so the message names the key and lists what is allowed)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _keys(cls, data):
        fields = cls.model_fields
        if not isinstance(data, dict):
            if isinstance(data, BaseModel):
                return data
            raise problem(f"expected a mapping with keys {', '.join(fields)}, got {type(data).__name__} {data!r}")
        for key in data:
            if key not in fields:
                raise problem(f"{key}: unknown key; allowed here: {', '.join(fields)}")
        for key, info in fields.items():
            if info.is_required() and key not in data:
                raise problem(f"{key}: required key is missing")
        return data


# ---------------------------------------------------------------- errors a lab user can act on

def _message(err: dict) -> str:
    """One line: the key path, then the problem. Our checks (type 'rtdecode') may name a sub-key
    first ("line: ..."), which is appended to the path."""
    loc = [str(p) for p in err["loc"]]
    where = ".".join(loc)
    if err["type"] != "rtdecode":  # a plain type error (e.g. text where a number belongs)
        return f"{where or '(top level)'}: {err['msg']} (got {err.get('input')!r})"
    msg = err["msg"]
    head, sep, rest = msg.partition(": ")
    if sep and all(part.isidentifier() or part.isdigit() for part in head.split(".")):
        return f"{where + '.' if where else ''}{head}: {rest}"
    return f"{where or '(top level)'}: {msg}"


def config_error(exc: ValidationError, source: str = "") -> ConfigError:
    msgs = [_message(e) for e in exc.errors(include_url=False)]
    prefix = f"{source}: " if source else ""
    if len(msgs) == 1:
        return ConfigError(prefix + msgs[0])
    return ConfigError(prefix + f"{len(msgs)} problems:\n  " + "\n  ".join(msgs))
