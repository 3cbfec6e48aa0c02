"""Valid-pixel block means (the proxies' decimation and the pyramid's halving), compiled. Arrays in,
arrays out: no I/O, no dask."""
import numpy as np

from rastalign._kernels._blocks import block_sums

_TYPES = tuple(np.dtype(t) for t in (np.uint8, np.uint16, np.int16, np.int32, np.float32, np.float64))


def block_mean(data, valid, f):
    """Mean of valid pixels over ``f x f`` blocks (partial edge blocks included).

    A block is valid when at least half of its in-image pixels are.
    """
    ny, nx = data.shape
    by, bx = -(-ny // f), -(-nx // f)
    s = np.zeros((by, bx))
    n = np.zeros((by, bx))
    m = np.zeros((by, bx))
    data = np.ascontiguousarray(data)
    if data.dtype not in _TYPES:  # any other type: its values in float64 (exact for these sums' types)
        data = data.astype(np.float64)
    block_sums(data, np.ascontiguousarray(valid, dtype=bool).view(np.uint8), int(f), s, n, m)
    ok = n >= 0.5 * m
    mean = s / np.maximum(n, 1.0)
    return mean.astype(np.float32), ok


def downsample2(img, valid):
    return block_mean(img, valid, 2)
