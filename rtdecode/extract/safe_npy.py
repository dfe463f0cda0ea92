"""Loading suite2p's pickled `.npy` files (stat.npy, ops.npy) without running code from them.

suite2p saves `stat.npy` (an object array of dicts) and `ops.npy` (a 0-d object array holding a
dict) with pickle. Plain `np.load(allow_pickle=True)` would run whatever a crafted file asks. Here
the pickle stream is read by an unpickler that admits only the types suite2p writes: numpy arrays,
dtypes and scalars, and the builtin containers, numbers and strings (plus pathlib paths and
OrderedDict). Anything else is refused with an error that names it and says how to convert the
folder; a file without pickled objects is loaded with allow_pickle=False.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
from numpy.lib import format as npformat

ALLOWED = {
    ("builtins", n) for n in ("dict", "list", "tuple", "set", "frozenset", "int", "float", "complex", "bool",
                              "str", "bytes", "bytearray", "slice")
} | {
    (m, n) for m in ("numpy.core.multiarray", "numpy._core.multiarray") for n in ("_reconstruct", "scalar")
} | {
    (m, "_frombuffer") for m in ("numpy.core.numeric", "numpy._core.numeric")
} | {
    ("numpy", "ndarray"), ("numpy", "dtype"), ("collections", "OrderedDict"),
    ("pathlib", "PosixPath"), ("pathlib", "WindowsPath"), ("pathlib", "PurePosixPath"),
    ("pathlib", "PureWindowsPath"), ("pathlib", "Path"),
} | {
    # the dtype classes numpy >= 1.25 pickles dtypes with (numpy.dtypes.Float32DType, ...)
    ("numpy.dtypes", n) for n in dir(__import__("numpy").dtypes) if n.endswith("DType")
}

CONVERT = ("if you trust this folder, convert it once in a Python session with suite2p installed: "
           "load it with np.load(path, allow_pickle=True), keep only arrays, numbers, strings, lists and "
           "dicts, and np.save it again")


class UnsafePickle(Exception):
    """The file asks for a type outside ALLOWED."""


class _Restricted(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in ALLOWED:
            raise UnsafePickle(f"{module}.{name}")
        return super().find_class(module, name)


def load(path: str | Path, error=ValueError):
    """The array in `path` (object arrays through the restricted unpickler). `error` (an exception
    class) is raised with a message naming the file and what is wrong."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            version = npformat.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = npformat.read_array_header_1_0(fh)
            else:
                shape, fortran, dtype = npformat.read_array_header_2_0(fh)
            if not dtype.hasobject:
                return np.load(path, allow_pickle=False)
            data = fh.read()
    except (OSError, ValueError) as exc:
        raise error(f"cannot read {path}: {exc}") from None
    try:
        obj = _Restricted(io.BytesIO(data)).load()
    except UnsafePickle as exc:
        raise error(f"{path} holds a Python object of type {exc}, which is not one suite2p writes; refused "
                    f"(loading it could run code). {CONVERT}") from None
    except Exception as exc:  # noqa: BLE001 -- a damaged pickle can fail in many ways
        raise error(f"cannot read {path}: {type(exc).__name__}: {exc}") from None
    if not isinstance(obj, np.ndarray):
        raise error(f"{path} does not hold a numpy array (got {type(obj).__name__}). {CONVERT}")
    return obj
