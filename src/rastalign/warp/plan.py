"""Plan the warp: the output chunk grid and, per chunk, the source box it needs.

Chunk grid, in order of precedence: explicit ``chunks`` (rows, cols, or dask-style
tuples of sizes for ragged grids), ``--split-factor k`` (2**k chunks laid out as
2**ceil(k/2) columns x 2**floor(k/2) rows), or automatic sizing so a chunk's working
set (source block + output, all bands, float32) stays under ``max_chunk_mb``.
Source boxes come from the model and the interpolation support (see
:func:`rastalign.warp.kernel.source_box`), never from a guessed halo.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np

from rastalign.params import chunk_shape_from_split_factor
from rastalign.warp.kernel import source_box

TILE = 512


def _sizes_to_edges(sizes):
    return tuple(int(v) for v in np.concatenate([[0], np.cumsum(sizes)]))


def _regular_edges(n, size):
    size = max(1, int(size))
    return tuple(list(range(0, n, size)) + [n])


def edges_without_sliver(n, size):
    """Chunks of ``size`` whose last one takes the remainder when that is under a quarter of ``size`` (2074 px
    in 2048 px chunks is one chunk of 2074, not 2048 + 26): a sliver chunk costs a task and a source read of
    its own for almost no pixels."""
    edges = list(_regular_edges(n, size))
    if len(edges) > 2 and edges[-1] - edges[-2] < max(1, int(size)) / 4:
        del edges[-2]
    return tuple(edges)


@dataclass(frozen=True)
class WarpPlan:
    output_shape: Tuple[int, int]
    row_edges: Tuple[int, ...]
    col_edges: Tuple[int, ...]
    resampling: str = "cubic"
    extra: int = 0  # extra source margin (mask erosion depth)

    @property
    def chunks(self):
        """dask-style chunk sizes ``((rows...), (cols...))``."""
        return (tuple(np.diff(self.row_edges).tolist()), tuple(np.diff(self.col_edges).tolist()))

    @property
    def n_chunks(self) -> int:
        return (len(self.row_edges) - 1) * (len(self.col_edges) - 1)

    def boxes(self):
        """Yield ``(i, j, (y0, y1, x0, x1))`` for every output chunk, row-major."""
        for i in range(len(self.row_edges) - 1):
            for j in range(len(self.col_edges) - 1):
                yield i, j, (self.row_edges[i], self.row_edges[i + 1], self.col_edges[j], self.col_edges[j + 1])

    def source_box(self, model, out_box, source_shape):
        return source_box(model, out_box, self.resampling, source_shape, self.extra)


def auto_chunk_side(n_bands: int, max_chunk_mb: float, itemsize: int = 4) -> int:
    """Square chunk side (multiple of the 512 px tile) whose working set fits ``max_chunk_mb``.

    Working set per output pixel: output bands + source bands (about the same area
    for a near-unit-scale model) as float32, plus masks.
    """
    per_px = n_bands * itemsize * 2 + 2
    side = int(math.sqrt(max_chunk_mb * 1e6 / per_px))
    return max(TILE, (side // TILE) * TILE)


def plan_warp(output_shape: Sequence[int], n_bands: int = 1, resampling: str = "cubic",
              split_factor: Optional[int] = None, chunks=None, max_chunk_mb: float = 64.0,
              extra: int = 0) -> WarpPlan:
    ny, nx = int(output_shape[0]), int(output_shape[1])
    if chunks is not None and isinstance(chunks[0], (tuple, list)):
        rows, cols = _sizes_to_edges(chunks[0]), _sizes_to_edges(chunks[1])
        if rows[-1] != ny or cols[-1] != nx:
            raise ValueError(f"chunks {chunks} do not add up to the output shape {(ny, nx)}")
    elif chunks is not None:
        rows, cols = _regular_edges(ny, chunks[0]), _regular_edges(nx, chunks[1])
    elif split_factor is not None:
        cy, cx = chunk_shape_from_split_factor((ny, nx), int(split_factor))
        rows, cols = _regular_edges(ny, cy), _regular_edges(nx, cx)
    else:
        side = auto_chunk_side(n_bands, max_chunk_mb)
        rows, cols = edges_without_sliver(ny, side), edges_without_sliver(nx, side)
    return WarpPlan((ny, nx), rows, cols, resampling, int(extra))


def blocks(arr):
    """``(index, box)`` of every block of a ``(bands, rows, cols)`` array, row-major."""
    rows = np.concatenate([[0], np.cumsum(arr.chunks[1])]).astype(int)
    cols = np.concatenate([[0], np.cumsum(arr.chunks[2])]).astype(int)
    for i in range(len(rows) - 1):
        for j in range(len(cols) - 1):
            yield (0, i, j), (rows[i], rows[i + 1], cols[j], cols[j + 1])
