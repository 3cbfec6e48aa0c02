"""The dask driver: one task per output chunk, each reading only the source box it needs.

The graph is built explicitly: task ``(i, j)`` calls ``read_source(box)`` for the
source box planned for output chunk ``(i, j)`` (from the model and the interpolation
support) and then :func:`~rastalign.warp.kernel.warp_block`. Tasks carry only a
picklable reader (a file path and a few numbers) and the model (a few KB), so the same
graph runs on threads, processes or a distributed cluster. Chunks are computed in
bounded batches and handed to ``sink.write(box, array)`` in the driver process, so
writing is safe under every scheduler and memory stays bounded whatever the scene size.
"""
from __future__ import annotations

import logging
import os
import time
from typing import Callable, Optional

import numpy as np
from scipy import ndimage

from .kernel import warp_block

log = logging.getLogger(__name__)


def to_output_dtype(values, valid, dtype, nodata):
    """Round (not truncate) and clip to ``dtype``; set invalid pixels to ``nodata``."""
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        out = np.clip(np.rint(values), info.min, info.max).astype(dtype)
    elif dtype.kind == "b":
        out = values >= 0.5
    else:
        out = values.astype(dtype)
    fill = nodata if nodata is not None else (np.nan if dtype.kind == "f" else 0)
    out[:, ~valid] = fill
    return out


def warp_chunk(read_source, source_shape, model, out_box, resampling, dtype, nodata,
               trim_depth=0, output_shape=None, threads=1, plan_extra=0):
    """Compute one output chunk (bands, rows, cols) in ``dtype``; the unit of work of the graph.

    With ``trim_depth > 0`` the chunk is computed on a box grown by that depth (within the
    output grid), its validity eroded by ``trim_depth`` and cropped back, so the result
    does not depend on the chunking.
    """
    from .kernel import source_box

    y0, y1, x0, x1 = out_box
    if trim_depth:
        oy, ox = output_shape
        g = (max(y0 - trim_depth, 0), min(y1 + trim_depth, oy), max(x0 - trim_depth, 0), min(x1 + trim_depth, ox))
    else:
        g = out_box
    sbox = source_box(model, g, resampling, source_shape, plan_extra)
    if sbox is None:
        vals = None
        valid = np.zeros((g[1] - g[0], g[3] - g[2]), bool)
    else:
        data, svalid = read_source(sbox)
        vals, valid = warp_block(data, model, g, source_origin=(sbox[0], sbox[2]), source_shape=source_shape,
                                 valid=svalid, resampling=resampling, threads=threads)
    if trim_depth:
        # pixels outside the output grid are not invalid: pad with True before eroding
        valid = ndimage.binary_erosion(valid, structure=np.ones((3, 3), bool), iterations=int(trim_depth),
                                       border_value=1)
        inner = (slice(y0 - g[0], y1 - g[0]), slice(x0 - g[2], x1 - g[2]))
        valid = valid[inner]
        vals = None if vals is None else vals[(slice(None),) + inner]
    if vals is None:
        nb = getattr(read_source, "n_bands", 1)
        vals = np.zeros((nb,) + valid.shape, np.float32)
    return to_output_dtype(vals, valid, dtype, nodata), int(valid.sum())


def _client_for(scheduler):
    if scheduler == "distributed" or "://" in str(scheduler):
        from distributed import default_client

        try:
            return default_client()
        except ValueError:
            return None
    return None


def run_warp(read_source: Callable, source_shape, model, plan, sink, dtype, nodata, scheduler="threads",
             progress=False, trim_depth=0, batch=None, client=None) -> dict:
    """Warp every chunk of ``plan`` and hand it to ``sink.write(box, array)``.

    ``read_source(box) -> (data, valid)`` must be picklable (e.g. a
    :func:`functools.partial` of a module-level function taking a path).
    ``scheduler`` is ``threads``, ``processes``, ``synchronous``, or ``distributed``
    (uses ``client`` or the current default client). Returns statistics.
    """
    import dask

    t0 = time.perf_counter()
    boxes = [box for _, _, box in plan.boxes()]
    ncpu = os.cpu_count() or 1
    inner_threads = max(1, ncpu // max(1, min(len(boxes), ncpu))) if scheduler != "processes" else 1
    if scheduler == "synchronous":
        inner_threads = ncpu
    batch = batch or max(2 * ncpu, 2)
    client = client or _client_for(scheduler)
    n_valid = 0
    bar = _progress(progress, len(boxes))
    tasks = [dask.delayed(warp_chunk, pure=True)(read_source, tuple(source_shape), model, box, plan.resampling,
                                                 np.dtype(dtype).str, nodata, trim_depth, plan.output_shape,
                                                 inner_threads, plan.extra)
             for box in boxes]
    if client is not None:
        from distributed import as_completed

        futures = {}
        pending = list(zip(boxes, tasks))
        running = as_completed()
        while pending or futures:
            while pending and len(futures) < batch:
                box, task = pending.pop(0)
                fut = client.compute(task)
                futures[fut] = box
                running.add(fut)
            fut = next(running)
            box = futures.pop(fut)
            arr, nv = fut.result()
            sink.write(box, arr)
            n_valid += nv
            bar(1)
    else:
        kw = {"scheduler": scheduler}
        for k in range(0, len(tasks), batch):
            results = dask.compute(*tasks[k:k + batch], **kw)
            for box, (arr, nv) in zip(boxes[k:k + batch], results):
                sink.write(box, arr)
                n_valid += nv
                bar(1)
    bar(0, close=True)
    return {"n_chunks": len(boxes), "valid_pixels": int(n_valid), "warp_write_s": time.perf_counter() - t0}


def _progress(enabled, total):
    """A tiny stderr progress bar for the chunk loop (the CLI turns it on with --progress)."""
    import sys

    state = {"done": 0, "t0": time.perf_counter()}

    def update(n, close=False):
        if not enabled:
            return
        state["done"] += n
        frac = state["done"] / max(total, 1)
        el = time.perf_counter() - state["t0"]
        bar = "#" * int(30 * frac)
        sys.stderr.write(f"\rwarp [{bar:<30}] {state['done']}/{total} chunks {el:6.1f} s")
        if close:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return update
