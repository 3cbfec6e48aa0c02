"""Warped float values to the output type in one compiled pass (``graph.to_output_dtype``'s common cases).

numpy takes five passes over a chunk for an integer output (``rint``, ``clip``, ``astype``,
the nodata clash test, the fill of invalid pixels) and as many temporaries; this does
each pixel once: round half to even, clip to the range, cast, nudge a valid value equal
to ``nodata`` by one step, fill invalid pixels. Same results as the numpy version for
finite values (non-finite values of valid pixels cast as numpy leaves undefined).
"""
from __future__ import annotations

import math

import numpy as np

from rastalign._kernels import _convert

_TYPES = tuple(np.dtype(t) for t in (np.uint8, np.int8, np.uint16, np.int16, np.float32, np.float64))


def _mask(valid):
    return np.ascontiguousarray(valid).view(np.uint8)


def to_output_dtype(values, valid, dtype, nodata, range_dtype=None):
    """As :func:`rastalign.warp.graph.to_output_dtype`, or ``None`` where this does not apply (an output
    type other than 8- and 16-bit integers, float32 and float64; a ``nodata`` the type cannot hold)."""
    dtype = np.dtype(dtype)
    rdt = np.dtype(range_dtype) if range_dtype is not None else dtype
    values = np.asarray(values)
    valid = np.asarray(valid)
    if dtype not in _TYPES or values.ndim != 3 or values.dtype not in (np.float32, np.float64) \
            or valid.shape != values.shape[1:] or valid.dtype != bool:
        return None
    out = np.empty(values.shape, dtype)
    if dtype.kind in "iu":
        info = np.iinfo(rdt if rdt.kind in "iu" else dtype)
        if info.min < np.iinfo(dtype).min or info.max > np.iinfo(dtype).max:
            return None  # numpy's cast wraps what the range lets through
        fill = 0 if nodata is None else nodata
        if not float(fill).is_integer() or not np.iinfo(dtype).min <= fill <= np.iinfo(dtype).max:
            return None
        fill = int(fill)
        nudge = fill + 1 if fill < info.max else fill - 1
        if not np.iinfo(dtype).min <= nudge <= np.iinfo(dtype).max:
            return None
        _convert.to_int(np.ascontiguousarray(values), _mask(valid), out, float(info.min), float(info.max), fill, nudge,
                        nodata is not None)
        return out
    fill = np.nan if nodata is None else float(nodata)
    if not math.isnan(fill) and float(dtype.type(fill)) != fill:
        return None
    _convert.to_float(np.ascontiguousarray(values), _mask(valid), out, float(dtype.type(fill)),
                      nodata is not None and not math.isnan(fill))
    return out
