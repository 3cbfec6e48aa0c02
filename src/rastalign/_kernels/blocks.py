"""Valid-pixel block means (the proxies' decimation and the pyramid's halving), compiled. Arrays in,
arrays out: no I/O, no dask."""
import numpy as np

from rastalign._kernels._blocks import block_means

_TYPES = tuple(np.dtype(t) for t in (np.uint8, np.uint16, np.int16, np.int32, np.float32, np.float64))


def block_mean(data, valid, f):
    """Mean of valid pixels over ``f x f`` blocks (partial edge blocks included): ``(mean float32, valid)``.

    A block is valid when at least half of its in-image pixels are.
    """
    ny, nx = data.shape
    by, bx = -(-ny // f), -(-nx // f)
    mean = np.empty((by, bx), np.float32)
    ok = np.empty((by, bx), bool)
    data = np.ascontiguousarray(data)
    if data.dtype not in _TYPES:  # any other type: its values in float64 (exact for these sums' types)
        data = data.astype(np.float64)
    block_means(data, np.ascontiguousarray(valid, dtype=bool).view(np.uint8), int(f), mean, ok.view(np.uint8))
    return mean, ok


def downsample2(img, valid):
    return block_mean(img, valid, 2)
