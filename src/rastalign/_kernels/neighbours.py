"""The ``k`` nearest points of a few thousand, compiled (:mod:`rastalign._kernels._neighbours`): no tree to
build, and nothing to import (``scipy.spatial`` costs 0.3 s on a fresh process's first estimation)."""
import numpy as np


def nearest(p, at, k):
    """Indices (M, k) of the ``k`` points of ``p`` (N, 2) nearest each of ``at`` (M, 2), nearest first (of
    equally near points, the first in ``p``); ``k`` at most ``min(N, 64)``."""
    from rastalign._kernels._neighbours import nearest as _nearest

    at = np.ascontiguousarray(np.reshape(at, (-1, 2)), np.float64)
    out = np.empty((len(at), int(k)), np.intp)
    _nearest(np.ascontiguousarray(np.reshape(p, (-1, 2)), np.float64), at, int(k), out)
    return out
