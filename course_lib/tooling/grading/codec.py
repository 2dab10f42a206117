"""Plain-data encoding of the values a student's code produced, for the judge.

The student process (untrusted) encodes; the judge (a clean process) decodes.  Decoding builds
only exact built-in types (``float``, never a subclass), numpy arrays of numeric dtypes and CPU
torch tensors; nothing is unpickled and no student class or function can cross.  A value that
cannot be represented decodes to :class:`Unavailable`, which fails any test that touches it.

Encoded form: JSON-compatible nested lists whose first element is a type tag::

    ["n"] None          ["b", bool]          ["i", hex]          ["f", float.hex()]
    ["c", re, im]       ["s", str]           ["y", base64]       ["l", [..]]   ["T", [..]]
    ["d", [[k, v], ..]] ["S", [..]] set      ["F", [..]] frozenset
    ["a", dtype, shape, base64]  numpy array     ["g", dtype, base64]  numpy scalar
    ["t", dtype, shape, base64, requires_grad]   torch tensor (CPU, strided)
    ["D", "torch"|"numpy", name]  a dtype        ["u", description]    not representable
"""
from __future__ import annotations

import base64
import math

import numpy as np

MAX_DEPTH = 64
MAX_ITEMS = 1_000_000          # list/tuple/dict entries in one value
MAX_BYTES = 256 * 2**20        # raw array bytes in one value

_NP_DTYPES = {"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
              "float16", "float32", "float64", "complex64", "complex128"}
_TORCH_DTYPES = {"bool", "int8", "int16", "int32", "int64", "uint8", "float16", "bfloat16",
                 "float32", "float64", "complex64", "complex128"}


class Unavailable:
    """Stands for a value that could not be brought over from the student's process."""

    def __init__(self, what: str):
        self._what = what

    def __repr__(self):
        return f"<not checkable: {self._what}>"

    def _fail(self, *args, **kwargs):
        raise AssertionError(f"this value cannot be checked by the grader ({self._what}); "
                             "return numbers, strings, lists, tuples, dicts, numpy arrays or tensors")

    __getattr__ = __call__ = __bool__ = __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = _fail
    __len__ = __iter__ = __getitem__ = __float__ = __int__ = __index__ = __array__ = _fail
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = __truediv__ = __neg__ = _fail
    __hash__ = object.__hash__


class EncodeError(ValueError):
    pass


# --------------------------------------------------------------------------- encoding
def encode(value, *, _depth: int = 0, _budget: list | None = None):
    """Encode ``value``; anything outside the supported types becomes ``["u", ...]``."""
    budget = _budget if _budget is not None else [MAX_ITEMS, MAX_BYTES]
    try:
        return _encode(value, _depth, budget)
    except EncodeError as err:
        return ["u", str(err)]


def _encode(value, depth, budget):
    if depth > MAX_DEPTH:
        raise EncodeError("nested too deeply")
    t = type(value)
    if value is None:
        return ["n"]
    if t is bool:
        return ["b", value]
    if t is int:
        return ["i", hex(value)]
    if t is float:
        return ["f", value.hex()]
    if t is complex:
        return ["c", value.real.hex(), value.imag.hex()]
    if t is str:
        _spend(budget, 1, len(value))
        return ["s", value]
    if t is bytes:
        _spend(budget, 1, len(value))
        return ["y", base64.b64encode(value).decode()]
    if t in (list, tuple, set, frozenset):
        _spend(budget, len(value), 0)
        items = sorted(value, key=repr) if t in (set, frozenset) else value
        tag = {list: "l", tuple: "T", set: "S", frozenset: "F"}[t]
        return [tag, [_encode(v, depth + 1, budget) for v in items]]
    if t is dict:
        _spend(budget, len(value), 0)
        return ["d", [[_encode(k, depth + 1, budget), _encode(v, depth + 1, budget)]
                      for k, v in value.items()]]
    if isinstance(value, np.ndarray) and t is np.ndarray:
        name = value.dtype.name
        if name not in _NP_DTYPES:
            raise EncodeError(f"numpy array of dtype {name}")
        data = np.ascontiguousarray(value).tobytes()
        _spend(budget, 1, len(data))
        return ["a", name, list(value.shape), base64.b64encode(data).decode()]
    if isinstance(value, np.generic) and value.dtype.name in _NP_DTYPES and t.__module__ == "numpy":
        return ["g", value.dtype.name, base64.b64encode(value.tobytes()).decode()]
    torch = _torch()
    if torch is not None:
        if isinstance(value, torch.Tensor) and t in (torch.Tensor, torch.nn.Parameter):
            return _encode_tensor(value, budget, torch)
        if t is torch.Size:
            return ["T", [["i", hex(int(n))] for n in value]]
        if t is torch.dtype:
            return ["D", "torch", str(value).removeprefix("torch.")]
    if t is np.dtype or isinstance(value, np.dtype):
        return ["D", "numpy", value.name]
    raise EncodeError(f"a value of type {t.__module__}.{t.__qualname__}")


def _encode_tensor(value, budget, torch):
    if value.layout != torch.strided or value.device.type != "cpu" or value.is_quantized:
        raise EncodeError("a tensor that is not a dense CPU tensor")
    name = str(value.dtype).removeprefix("torch.")
    if name not in _TORCH_DTYPES:
        raise EncodeError(f"tensor of dtype {name}")
    with torch.no_grad():
        flat = value.detach().contiguous().reshape(-1)
        if name == "bfloat16":
            raw = flat.view(torch.int16).numpy().tobytes()
        else:
            raw = flat.numpy().tobytes()
    _spend(budget, 1, len(raw))
    return ["t", name, list(value.shape), base64.b64encode(raw).decode(), bool(value.requires_grad)]


def _spend(budget, items, nbytes):
    budget[0] -= items
    budget[1] -= nbytes
    if budget[0] < 0 or budget[1] < 0:
        raise EncodeError("a value too large to check")


def _torch():
    import sys
    return sys.modules.get("torch")


# --------------------------------------------------------------------------- decoding
def decode(enc, *, _depth: int = 0):
    """The value ``enc`` stands for, built from exact built-in, numpy and torch types only."""
    if _depth > MAX_DEPTH:
        raise ValueError("encoded value nested too deeply")
    if not isinstance(enc, list) or not enc or not isinstance(enc[0], str):
        raise ValueError(f"malformed encoded value: {str(enc)[:80]}")
    tag, args = enc[0], enc[1:]
    if tag == "n":
        return None
    if tag == "b":
        return bool(_one(args, bool))
    if tag == "i":
        return int(_one(args, str), 16)
    if tag == "f":
        return float.fromhex(_one(args, str))
    if tag == "c":
        return complex(float.fromhex(args[0]), float.fromhex(args[1]))
    if tag == "s":
        return str(_one(args, str))
    if tag == "y":
        return base64.b64decode(_one(args, str))
    if tag in ("l", "T", "S", "F"):
        items = [decode(v, _depth=_depth + 1) for v in _one(args, list)]
        return {"l": list, "T": tuple, "S": set, "F": frozenset}[tag](items)
    if tag == "d":
        return {decode(k, _depth=_depth + 1): decode(v, _depth=_depth + 1) for k, v in _one(args, list)}
    if tag == "a":
        name, shape, data = args
        if name not in _NP_DTYPES:
            raise ValueError(f"dtype {name!r} not allowed")
        return np.frombuffer(base64.b64decode(data), dtype=name).reshape(_shape(shape)).copy()
    if tag == "g":
        name, data = args
        if name not in _NP_DTYPES:
            raise ValueError(f"dtype {name!r} not allowed")
        return np.frombuffer(base64.b64decode(data), dtype=name)[0].copy()
    if tag == "t":
        import torch
        name, shape, data, requires_grad = args
        if name not in _TORCH_DTYPES:
            raise ValueError(f"dtype {name!r} not allowed")
        raw = base64.b64decode(data)
        if name == "bfloat16":
            flat = torch.from_numpy(np.frombuffer(raw, dtype="int16").copy()).view(torch.bfloat16)
        else:
            flat = torch.from_numpy(np.frombuffer(raw, dtype=name).copy())
        out = flat.reshape(_shape(shape))
        if requires_grad is True and (out.is_floating_point() or out.is_complex()):
            out.requires_grad_()
        return out
    if tag == "D":
        kind, name = args
        if kind == "torch":
            import torch
            if name not in _TORCH_DTYPES:
                raise ValueError(f"dtype {name!r} not allowed")
            return getattr(torch, name)
        if name not in _NP_DTYPES:
            raise ValueError(f"dtype {name!r} not allowed")
        return np.dtype(name)
    if tag == "u":
        return Unavailable(str(args[0]) if args else "unknown")
    raise ValueError(f"unknown tag {tag!r}")


def _one(args, kind):
    if len(args) != 1 or not isinstance(args[0], kind):
        raise ValueError("malformed encoded value")
    return args[0]


def _shape(shape):
    if not isinstance(shape, list) or not all(type(n) is int and n >= 0 for n in shape):
        raise ValueError("malformed shape")
    if math.prod(shape) > MAX_BYTES:
        raise ValueError("array too large")
    return tuple(shape)
