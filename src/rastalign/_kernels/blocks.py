"""Valid-pixel block means (the proxies' decimation and the pyramid's halving), compiled. Arrays in,
arrays out: no I/O, no dask."""
import numpy as np
from numba import njit

from rastalign._kernels.jit import announce

announce(__file__)


@njit(nogil=True, cache=True)
def _block_sums(data, valid, f, s, n, m):
    ny, nx = data.shape
    for y in range(ny):
        by = y // f
        for x in range(nx):
            bx = x // f
            m[by, bx] += 1.0
            if valid[y, x]:
                s[by, bx] += data[y, x]
                n[by, bx] += 1.0


def block_mean(data, valid, f):
    """Mean of valid pixels over ``f x f`` blocks (partial edge blocks included).

    A block is valid when at least half of its in-image pixels are.
    """
    ny, nx = data.shape
    by, bx = -(-ny // f), -(-nx // f)
    s = np.zeros((by, bx))
    n = np.zeros((by, bx))
    m = np.zeros((by, bx))
    _block_sums(np.ascontiguousarray(data), np.ascontiguousarray(valid), int(f), s, n, m)
    ok = n >= 0.5 * m
    mean = s / np.maximum(n, 1.0)
    return mean.astype(np.float32), ok


def downsample2(img, valid):
    return block_mean(img, valid, 2)
