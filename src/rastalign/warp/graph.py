"""The lazy warp: ONE function builds the warp's tasks over the output chunk grid.

:func:`warp_graph` returns them (a :class:`WarpGraph`), :func:`lazy_warp` the same as a
``dask.array.Array`` ``(bands, rows, cols)``; chunk
``(0, i, j)`` is one task that reads only the moving-image box the model says it needs
(:func:`rastalign.warp.kernel.source_box`: the model's displacement over the chunk plus the
interpolation support, plus the prefilter and mask-erosion margins) and resamples it with
:func:`~rastalign.warp.kernel.warp_block`. The source is either a picklable description
(:mod:`rastalign.io.sources`: a path and a few numbers, reopened inside the task) or a dask
or numpy array, which is sliced to that box. The model is one key of the graph, shipped
once. Every path (the CLIs, ``apply``, the accessor, the ``Spalipy`` class) calls this, so
their outputs agree bit for bit, and chunked output equals in-memory output because every
chunk evaluates the same global lattice. The sinks (:mod:`rastalign.sinks.output`) consume
the array under whatever scheduler is active (``dask.config`` or a ``Client``).
"""
from __future__ import annotations

import os
import uuid

import numpy as np

from rastalign.warp.kernel import source_box, warp_block
from rastalign.warp.plan import plan_warp


def to_output_dtype(values, valid, dtype, nodata, range_dtype=None):
    """Round (not truncate) and clip to the range of ``range_dtype`` (default ``dtype``), store
    as ``dtype``; set invalid pixels to ``nodata``. A valid pixel never reads as nodata. The common
    cases run in one compiled pass (:mod:`rastalign._kernels.convert`), the rest in :func:`numpy_output_dtype`."""
    from rastalign._kernels import convert as _convert

    fast = _convert.to_output_dtype(values, valid, dtype, nodata, range_dtype)
    return fast if fast is not None else numpy_output_dtype(values, valid, dtype, nodata, range_dtype)


def numpy_output_dtype(values, valid, dtype, nodata, range_dtype=None):
    """:func:`to_output_dtype` in numpy: every case, and the reference the compiled pass is tested against."""
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
        # e.g. cubic overshoot clipped to 0 with nodata 0: nudge by one step
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
    from scipy import ndimage

    w = valid.astype(np.float32)
    den = ndimage.uniform_filter(w, size, mode="constant", cval=0.0)
    out = np.empty(data.shape, np.float32)
    for b in range(data.shape[0]):
        num = ndimage.uniform_filter(np.where(valid, data[b], 0).astype(np.float32), size, mode="constant", cval=0.0)
        out[b] = num / np.maximum(den, 1e-12)
    return out, den > 0.5


class ChunkSpec:
    """Everything a chunk task needs besides its box and the model (small, picklable, one per graph)."""

    def __init__(self, source_shape, n_bands, resampling, dtype, nodata, trim, output_shape, extra, range_dtype,
                 prefilter, threads, source_nodata):
        self.source_shape, self.n_bands, self.resampling = tuple(source_shape), int(n_bands), resampling
        self.dtype, self.nodata, self.trim, self.output_shape = np.dtype(dtype).str, nodata, int(trim), output_shape
        self.extra, self.range_dtype, self.prefilter, self.threads = int(extra), range_dtype, int(prefilter), threads
        self.source_nodata = source_nodata

    def grown(self, box):
        """The box computed for ``box``: grown by the trim depth (within the output grid)."""
        if not self.trim:
            return tuple(box)
        y0, y1, x0, x1 = box
        oy, ox = self.output_shape
        t = self.trim
        return max(y0 - t, 0), min(y1 + t, oy), max(x0 - t, 0), min(x1 + t, ox)

    def source_box(self, model, box):
        return source_box(model, self.grown(box), self.resampling, self.source_shape, self.extra)

    def __repr__(self):  # stable, for tokenize
        return f"ChunkSpec({sorted(vars(self).items())!r})"


def warp_chunk(read, model, box, spec: ChunkSpec):
    """One output chunk ``(bands, rows, cols)`` in ``spec.dtype``: ``read(sbox) -> (data, valid)``
    gives the planned source box. With a trim depth the chunk is computed on a grown box, its
    validity eroded and cropped back, so the result does not depend on the chunking."""
    y0, y1, x0, x1 = box
    g = spec.grown(box)
    sbox = spec.source_box(model, box)
    vals = None
    if sbox is None:
        valid = np.zeros((g[1] - g[0], g[3] - g[2]), bool)
    else:
        data, svalid = read(sbox)
        if spec.prefilter:
            data, svalid = box_prefilter(data, svalid, spec.prefilter)
        vals, valid = warp_block(data, model, g, source_origin=(sbox[0], sbox[2]), source_shape=spec.source_shape,
                                 valid=svalid, resampling=spec.resampling, threads=spec.threads)
    if spec.trim:
        from scipy import ndimage

        # pixels outside the output grid are not invalid: pad with True before eroding
        valid = ndimage.binary_erosion(valid, structure=np.ones((3, 3), bool), iterations=spec.trim, border_value=1)
        inner = (slice(y0 - g[0], y1 - g[0]), slice(x0 - g[2], x1 - g[2]))
        valid = valid[inner]
        vals = None if vals is None else vals[(slice(None),) + inner]
    if vals is None:
        vals = np.zeros((spec.n_bands,) + valid.shape, np.float32)
    return to_output_dtype(vals, valid, spec.dtype, spec.nodata, spec.range_dtype)


def _from_source(source, model, box, spec):
    return warp_chunk(source.read, model, box, spec)


def _from_piece(piece, model, box, spec):
    from rastalign._kernels.pixels import validity

    def read(_sbox):
        data = np.asarray(piece)
        return data, validity(data, spec.source_nodata)

    return warp_chunk(read, model, box, spec)


class WarpGraph:
    """The warp's tasks, one per output chunk ``(name, 0, i, j)`` of ``chunks``, plus the model, the chunk spec and
    the source description as keys of their own: what :func:`lazy_warp` wraps as a dask array. The FITS sink
    and the ``Spalipy`` class take it as it is (``shape``, ``dtype``, ``chunks``, :meth:`to_delayed`,
    :meth:`compute`), so they never import ``dask.array`` (which loads xarray and pandas)."""

    def __init__(self, name, tasks, deps, chunks, dtype):
        self.name, self.tasks, self.deps, self.chunks, self.dtype = name, tasks, deps, chunks, np.dtype(dtype)
        self.shape = tuple(sum(c) for c in chunks)
        self.numblocks = tuple(len(c) for c in chunks)

    def graph(self):
        from dask.highlevelgraph import HighLevelGraph

        return HighLevelGraph.from_collections(self.name, self.tasks, dependencies=self.deps)

    def to_delayed(self):
        """One ``dask.delayed`` object per block, in an object array of shape ``numblocks``."""
        from dask.delayed import Delayed

        graph = self.graph()
        out = np.empty(self.numblocks, object)
        for idx in np.ndindex(*self.numblocks):
            out[idx] = Delayed((self.name,) + idx, graph, layer=self.name)
        return out

    def compute(self, scheduler=None):
        """The whole warp as one numpy array, computed on ``scheduler`` (default: the active one)."""
        from rastalign.runtime.scheduler import compute
        from rastalign.warp.plan import blocks

        values = compute(*self.to_delayed().ravel().tolist(), **({} if scheduler is None else {"scheduler": scheduler}))
        out = np.empty(self.shape, self.dtype)
        for (_, (y0, y1, x0, x1)), v in zip(blocks(self), values):
            out[:, y0:y1, x0:x1] = v
        return out


def warp_graph(source, model, output_shape, params, dtype, nodata, source_nodata=None, range_dtype=None):
    """The warp of ``source`` by ``model`` (output px -> moving px, ``(x, y)``, integer pixel
    centres) onto an ``output_shape`` grid, ``(bands, rows, cols)`` of ``dtype``, as its tasks (a :class:`WarpGraph`).

    ``source``: a :mod:`rastalign.io.sources` description, or a dask/numpy array
    ``(bands, rows, cols)`` (or ``(rows, cols)``) whose invalid pixels are NaN/Inf or
    ``source_nodata``. ``params``: :class:`rastalign.params.WarpParams` (resampling, the
    chunk grid from ``chunks`` / ``split_factor`` / ``max_chunk_mb``, edge trimming).
    Invalid output pixels are ``nodata``. Downsampling by 1.5x or more box-averages first.
    A numpy source's pieces are views of it in the tasks; a dask source's are slices of its graph.
    """
    from dask.base import is_dask_collection, tokenize

    described = hasattr(source, "read")
    lazy = not described and is_dask_collection(source)
    if not described:
        source = source if lazy else np.asarray(source)
        if source.ndim == 2:
            source = source[None]
    n_bands = source.n_bands if described else int(source.shape[0])
    src_shape = tuple(source.shape) if described else tuple(source.shape[1:])
    pre = prefilter_size(model)
    plan = plan_warp(output_shape, n_bands, params.resampling, params.split_factor, params.chunks,
                     params.max_chunk_mb, extra=pre // 2 + 1 if pre else 0)
    threads = max(1, (os.cpu_count() or 1) // max(plan.n_chunks, 1))  # bounded nested parallelism
    spec = ChunkSpec(src_shape, n_bands, plan.resampling, dtype, nodata,
                     params.edge_trim_depth if params.trim_edge_invalid else 0, plan.output_shape, plan.extra,
                     None if range_dtype is None else np.dtype(range_dtype).str, pre, threads, source_nodata)
    # an in-memory array is not hashed (it may be large): its warp gets a fresh name, as da.from_array(name=False)
    ident = source if described else source.name if lazy else uuid.uuid4().hex
    token = tokenize(ident, model.to_json(indent=None), spec, plan.chunks)
    name = f"rastalign-warp-{token}"
    mkey, skey, rkey = f"rastalign-model-{token}", f"rastalign-spec-{token}", f"rastalign-source-{token}"
    dsk, deps = {mkey: model, skey: spec}, []  # each once in the graph, whatever the number of chunks
    if described:
        dsk[rkey] = source
    for i, j, box in plan.boxes():
        if described:
            dsk[(name, 0, i, j)] = (_from_source, rkey, mkey, box, skey)
            continue
        sbox = spec.source_box(model, box)
        if sbox is None:
            piece = np.zeros((n_bands, 0, 0), source.dtype)
        elif lazy:
            from dask.array.core import concatenate3

            part = source[:, sbox[0]:sbox[1], sbox[2]:sbox[3]]
            deps.append(part)
            piece = (concatenate3, part.__dask_keys__())
        else:
            piece = source[:, sbox[0]:sbox[1], sbox[2]:sbox[3]]
        dsk[(name, 0, i, j)] = (_from_piece, piece, mkey, box, skey)
    return WarpGraph(name, dsk, deps, ((n_bands,),) + plan.chunks, dtype)


def lazy_warp(source, model, output_shape, params, dtype, nodata, source_nodata=None, range_dtype=None):
    """:func:`warp_graph` as a lazy dask array ``(bands, rows, cols)`` of ``dtype`` (same arguments)."""
    import dask.array as da

    g = warp_graph(source, model, output_shape, params, dtype, nodata, source_nodata, range_dtype)
    return da.Array(g.graph(), g.name, chunks=g.chunks, dtype=g.dtype)
