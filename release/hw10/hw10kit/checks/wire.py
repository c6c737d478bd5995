"""Plain-data encoding between the judge and the process that runs student code.

Messages are JSON objects, one per line. Arrays travel as
``{"__nd__": [dtype, shape, base64(zlib(raw little-endian bytes))]}``. Decoding is
strict: only listed dtypes, bounded sizes, no pickles, nothing executable.
"""
from __future__ import annotations

import base64
import json
import math
import zlib

import numpy as np

DTYPES = ("float32", "float64", "int64", "int32", "bool", "uint8")
MAX_ELEMENTS = 4_000_000           # per message, all arrays together
MAX_MESSAGE = 64 * 1024 * 1024     # bytes of one JSON line


class WireError(ValueError):
    """A message that does not follow the protocol."""


def _encode(obj):
    if isinstance(obj, np.ndarray):
        arr = np.asarray(obj, order="C")  # (ascontiguousarray would make 0-d arrays 1-d)
        if arr.dtype.name not in DTYPES:
            arr = arr.astype(np.float64)
        raw = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
        return {"__nd__": [arr.dtype.name, list(arr.shape),
                           base64.b64encode(zlib.compress(raw, 1)).decode("ascii")]}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {str(k): _encode(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_encode(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise WireError(f"cannot send a {type(obj).__name__}")


def _decode(obj, budget=None):
    """Decode arrays, charging their element counts to ``budget`` (a one-item list) so
    that one message cannot decode to more than MAX_ELEMENTS in all."""
    budget = [MAX_ELEMENTS] if budget is None else budget
    if isinstance(obj, dict):
        if "__nd__" in obj:
            try:
                dtype, shape, data = obj["__nd__"]
                shape = tuple(int(s) for s in shape)
            except (TypeError, ValueError, OverflowError):
                raise WireError("malformed array") from None
            if dtype not in DTYPES or not isinstance(data, str) or any(s < 0 for s in shape) \
                    or len(shape) > 8:
                raise WireError("bad array header")
            count = math.prod(shape)  # Python integers: no int64 overflow
            budget[0] -= count
            if budget[0] < 0:
                raise WireError("arrays too large")
            dt = np.dtype(dtype).newbyteorder("<")
            try:
                raw = zlib.decompressobj().decompress(base64.b64decode(data, validate=True),
                                                      count * dt.itemsize + 1)
            except (ValueError, zlib.error, TypeError):
                raise WireError("array data is not valid base64/zlib") from None
            if len(raw) != count * dt.itemsize:
                raise WireError("array data does not match its shape")
            try:
                return np.frombuffer(raw, dtype=dt).astype(dtype).reshape(shape)
            except (ValueError, OverflowError, MemoryError):
                raise WireError("array data does not match its shape") from None
        return {k: _decode(v, budget) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(v, budget) for v in obj]
    return obj


def dumps(obj) -> bytes:
    """One message as a JSON line (bytes, newline-terminated)."""
    return (json.dumps(_encode(obj), allow_nan=True, separators=(",", ":")) + "\n").encode()


def loads(line: bytes | str):
    """Decode one message; raises WireError for anything off-protocol."""
    if len(line) > MAX_MESSAGE:
        raise WireError("message too large")
    try:
        obj = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise WireError("message is not JSON") from None
    if not isinstance(obj, dict):
        raise WireError("message is not an object")
    try:
        return _decode(obj)
    except WireError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever a forged message provokes, it is off-protocol
        raise WireError(f"message could not be decoded ({type(exc).__name__})") from None
