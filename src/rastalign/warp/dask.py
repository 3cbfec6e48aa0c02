"""The chunk driver: one task per output chunk, each reading only the source box it needs.

Task ``(i, j)`` calls ``read_source(box)`` for the source box planned for output chunk
``(i, j)`` (from the model and the interpolation support) and then
:func:`~rastalign.warp.kernel.warp_block`. Tasks carry only a picklable reader (a file
path and a few numbers) and the model (a few KB), so they run on a thread pool, a
process pool or a dask ``distributed`` cluster alike. At most a bounded number of
chunks are in flight and each is handed to ``sink.write(box, array)`` in the driver
process as it completes, so writing is safe under every scheduler, overlaps the
computation, and memory stays bounded whatever the scene size. (The lazy
xarray/dask-array path is :mod:`rastalign.accessor`.)
"""
from __future__ import annotations

import logging
import os
import time
from typing import Callable

import numpy as np
from scipy import ndimage

from .kernel import warp_block

log = logging.getLogger(__name__)


def to_output_dtype(values, valid, dtype, nodata, range_dtype=None):
    """Round (not truncate) and clip to the range of ``range_dtype`` (default ``dtype``), store
    as ``dtype``; set invalid pixels to ``nodata``."""
    dtype = np.dtype(dtype)
    rdt = np.dtype(range_dtype) if range_dtype is not None else dtype
    if dtype.kind in "iu":
        info = np.iinfo(rdt if rdt.kind in "iu" else dtype)
        out = np.clip(np.rint(values), info.min, info.max).astype(dtype)
    elif dtype.kind == "b":
        out = values >= 0.5
    else:
        out = values.astype(dtype)
    fill = nodata if nodata is not None else (np.nan if dtype.kind == "f" else 0)
    if nodata is not None and not (isinstance(fill, float) and np.isnan(fill)):
        # a valid pixel must never read as nodata (e.g. cubic overshoot clipped to 0 with nodata 0)
        clash = (out == out.dtype.type(fill)) & valid
        if clash.any():
            if dtype.kind in "iu":
                info = np.iinfo(rdt if rdt.kind in "iu" else dtype)
                out[clash] = out.dtype.type(fill + 1 if fill < info.max else fill - 1)
            else:
                out[clash] = np.nextafter(out.dtype.type(fill), out.dtype.type(np.inf))
    out[:, ~valid] = fill
    return out


def prefilter_size(model) -> int:
    """Box size (moving px) that averages the source before sampling when the output grid is
    coarser than the moving grid by 1.5x or more (area-like downsampling, no aliasing); 0 otherwise."""
    scale = float(np.sqrt(abs(np.linalg.det(model.linear[:, :2]))))
    if scale < 1.5:
        return 0
    k = int(round(scale))
    return k + 1 if k % 2 == 0 else k  # odd, so the box is centred and shifts nothing


def box_prefilter(data, valid, size):
    """Mean over ``size x size`` boxes of valid pixels (invalid and out-of-block count as absent)."""
    w = valid.astype(np.float32)
    den = ndimage.uniform_filter(w, size, mode="constant", cval=0.0)
    out = np.empty(data.shape, np.float32)
    for b in range(data.shape[0]):
        num = ndimage.uniform_filter(np.where(valid, data[b], 0).astype(np.float32), size, mode="constant", cval=0.0)
        out[b] = num / np.maximum(den, 1e-12)
    return out, den > 0.5


def warp_chunk(read_source, source_shape, model, out_box, resampling, dtype, nodata,
               trim_depth=0, output_shape=None, threads=1, plan_extra=0, range_dtype=None, prefilter=0):
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
        if prefilter:
            data, svalid = box_prefilter(data, svalid, prefilter)
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
    return to_output_dtype(vals, valid, dtype, nodata, range_dtype), int(valid.sum())


def _client_for(scheduler):
    if scheduler == "distributed" or "://" in str(scheduler):
        from distributed import default_client

        try:
            return default_client()
        except ValueError:
            return None
    return None


def run_warp(read_source: Callable, source_shape, model, plan, sink, dtype, nodata, scheduler="threads",
             progress=False, trim_depth=0, batch=None, client=None, range_dtype=None, prefilter=0) -> dict:
    """Warp every chunk of ``plan`` and hand it to ``sink.write(box, array)`` as chunks complete.

    ``read_source(box) -> (data, valid)`` must be picklable (e.g. a
    :func:`functools.partial` of a module-level function taking a path).
    ``scheduler``: ``threads`` (a thread pool; the kernel and GDAL release the GIL),
    ``processes`` (a process pool), ``synchronous`` (in this thread, the kernel itself
    multi-threaded), or ``distributed`` / an address (``client`` or the current default
    client). At most ``batch`` chunks are in flight, so memory is bounded by the chunk
    size, not the scene; writing happens in this process only, overlapping computation.
    """
    t0 = time.perf_counter()
    boxes = [box for _, _, box in plan.boxes()]
    ncpu = os.cpu_count() or 1
    client = client or _client_for(scheduler)
    batch = batch or max(2 * ncpu, 2)
    pooled = client is not None or scheduler in ("threads", "processes")
    inner = 1 if pooled and len(boxes) >= ncpu else ncpu
    args = (tuple(source_shape), model)
    rest = (plan.resampling, np.dtype(dtype).str, nodata, trim_depth, plan.output_shape, inner, plan.extra,
            range_dtype, prefilter)
    bar = _progress(progress, len(boxes))
    n_valid = 0

    def consume(box, result):
        nonlocal n_valid
        arr, nv = result
        sink.write(box, arr)
        n_valid += nv
        bar(1)

    if client is not None:
        from distributed import as_completed

        model_f = client.scatter(model, broadcast=True)
        pending = list(boxes)
        running = as_completed()
        where = {}
        while pending or where:
            while pending and len(where) < batch:
                box = pending.pop(0)
                fut = client.submit(warp_chunk, read_source, args[0], model_f, box, *rest, pure=False)
                where[fut] = box
                running.add(fut)
            fut = next(running)
            consume(where.pop(fut), fut.result())
    elif scheduler == "synchronous" or len(boxes) == 1:
        for box in boxes:
            consume(box, warp_chunk(read_source, *args, box, *rest))
    else:
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, ThreadPoolExecutor, wait

        pool_cls = ProcessPoolExecutor if scheduler == "processes" else ThreadPoolExecutor
        with pool_cls(max_workers=ncpu) as pool:
            pending = list(boxes)
            where = {}
            while pending or where:
                while pending and len(where) < batch:
                    box = pending.pop(0)
                    where[pool.submit(warp_chunk, read_source, *args, box, *rest)] = box
                done, _ = wait(list(where), return_when=FIRST_COMPLETED)
                for fut in done:
                    consume(where.pop(fut), fut.result())
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
