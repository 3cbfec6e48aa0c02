"""Stacks: many scenes (GeoTIFF) or frames (FITS) aligned onto one reference in one run.

The reference is inspected and decimated (FITS: its stars detected) once, and every scene
shares it. Scenes run concurrently on the active dask scheduler: each scene's proxies,
native refinement windows, detection tiles and warp are tasks, so with a cluster the
stack spreads over every worker while the client only solves the small problems. A scene
that cannot be aligned (unreadable, outside the reference, failed quality check) gets its
row with a one-line reason and no output; the other scenes complete. Every scene's image
and model are published atomically, so an interrupted stack resumes with
``skip_existing=True``: the scenes whose image and model verify are not redone.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from rastalign.errors import InputError, OutputError, RastalignError
from rastalign.io.fits import FITS_SUFFIXES, is_fits_file
from rastalign.params import split_options
from rastalign.runtime.pools import BrokenExecutor, as_completed, process_pool, thread_pool
from rastalign.sinks.output import written_shape

log = logging.getLogger(__name__)

RASTER_SUFFIXES = {"GTiff": ".tif", "COG": ".cog.tif", "FITS": ".fits", "Zarr": ".zarr"}
MIXED_FAILURES = 5  # exit status when scenes failed for different kinds of reasons
MAX_CONCURRENT = 16
MIN_FRAMES_FOR_PROCESSES = 3  # fewer FITS frames than this are not worth starting worker processes for


@dataclass
class StackResult:
    """One row per scene (see :data:`rastalign.pipelines.stack_report.COLUMNS`) and where the stack report went."""

    kind: str  # "raster" or "fits"
    reference: str
    output_dir: str
    rows: list
    report_json: str
    report_csv: str
    plot: Optional[str]
    wall_s: float
    info: dict = field(default_factory=dict)

    @property
    def failed(self) -> list:
        return [r for r in self.rows if r["status"] == "failed"]

    @property
    def exit_code(self) -> int:
        """0 when every scene passed; the failures' exit status when they are of one kind (2 input or
        output, 3 alignment or quality), else :data:`MIXED_FAILURES`."""
        codes = {int(r["exit_code"]) for r in self.failed}
        return 0 if not codes else codes.pop() if len(codes) == 1 else MIXED_FAILURES

    def summary(self) -> dict:
        n = len(self.rows)
        return {"kind": self.kind, "reference": self.reference, "output_dir": self.output_dir,
                "n_scenes": n, "n_ok": n - len(self.failed), "n_failed": len(self.failed),
                "n_reused": sum(bool(r.get("reused")) for r in self.rows),
                "stack_report_json": self.report_json, "stack_report_csv": self.report_csv,
                "stack_report_png": self.plot, "wall_s": round(self.wall_s, 3),
                "per_scene_s": round(self.wall_s / max(n, 1), 3),
                "failed": [{"scene": r["scene"], "error": r["error"]} for r in self.failed]}


def read_list(path) -> list:
    """``--from-list FILE``: one path or URL a line; blank lines and ``#`` comments ignored."""
    try:
        with open(path, encoding="utf-8") as fh:
            lines = [ln.strip() for ln in fh]
    except OSError as exc:
        raise InputError(f"cannot read the scene list {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise InputError(f"the scene list {path} is not a text file (one path or URL a line)") from None
    return [ln for ln in lines if ln and not ln.startswith("#")]


def _stem(path) -> str:
    name = str(path).rstrip("/").replace("\\", "/").rsplit("/", 1)[-1]
    low = name.lower()
    for sfx in sorted(FITS_SUFFIXES + (".cog.tif", ".tiff", ".tif", ".zarr", ".vrt", ".jp2", ".png"), key=len,
                      reverse=True):
        if low.endswith(sfx) and len(name) > len(sfx):
            return name[: -len(sfx)]
    return name.rsplit(".", 1)[0] if "." in name[1:] else name


def output_names(paths, output_dir, suffix) -> list:
    """``DIR/<stem>.aligned<suffix>`` per scene; stems that occur more than once get a short hash of the full
    path, so two scenes never write the same file (``a/x.tif`` and ``b/x.tif``). Names depend on the list's
    file names only, so a resumed run with the same list finds its outputs."""
    stems = [_stem(p) for p in paths]
    out = []
    for p, s in zip(paths, stems):
        if stems.count(s) > 1:
            s = f"{s}-{hashlib.sha1(str(p).encode()).hexdigest()[:8]}"
        out.append(f"{str(output_dir).rstrip('/')}/{s}.aligned{suffix}")
    return out


def _check_scenes(paths):
    if not paths:
        raise InputError("no scenes to align: give MOVING paths or --from-list FILE")
    seen = set()
    for p in paths:
        key = p if "://" in p else os.path.realpath(p)
        if key in seen:
            raise InputError(f"scene listed twice: {p}")
        seen.add(key)


def _prepare_dir(output_dir):
    from rastalign.io.paths import is_url

    if is_url(output_dir):
        return str(output_dir).rstrip("/")
    d = Path(output_dir)
    if d.exists() and not d.is_dir():
        raise OutputError(f"--output-dir is not a folder: {d}")
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create --output-dir {d}: {exc.strerror or exc}") from None
    return str(d)


def _exists(path) -> bool:
    from rastalign.io.paths import filesystem, is_url

    if is_url(path):
        fs, key = filesystem(path)
        return fs.exists(key)
    return os.path.lexists(path)


def _verified(out, model_path) -> bool:
    """A scene is done when its model loads and its image opens with the model's output shape."""
    from rastalign.io.models import load_model

    if not (_exists(out) and _exists(model_path)):
        return False
    try:
        model = load_model(model_path)
        # resampled: the model's output grid; a corrected WCS or georeference: the moving frame itself
        return written_shape(out) in (tuple(model.output_shape), tuple(model.moving_shape or ()))
    except Exception:  # noqa: BLE001 - anything unreadable means: redo the scene
        return False


def align_stack(moving_paths, reference_path, output_dir, *, overwrite=False, skip_existing=False,
                scheduler="threads", n_workers=None, threads_per_worker=None, progress=False, concurrency=None,
                plot=True, **options) -> StackResult:
    """Align every scene of ``moving_paths`` onto ``reference_path``; write ``output_dir/<stem>.aligned.*``
    (image and ``.model.json``) and ``stack_report.json``/``.csv``/``.png``.

    GeoTIFF (and other raster) scenes take :func:`rastalign.align_image_pair`'s options, FITS frames
    (chosen by the reference's format) :func:`rastalign.align_fits`'. ``concurrency``: scenes in flight at
    once (default: the scheduler's threads, at least 2, at most 16). Scene failures never raise: they are
    rows with ``status="failed"``; see :attr:`StackResult.exit_code`.
    """
    from rastalign.sinks.atomic import check_output_path
    from rastalign.params import check_remote_format, output_format_for
    from rastalign.runtime import running
    from rastalign.runtime.progress import scenes, stage
    from rastalign.runtime.scheduler import on_cluster, parallelism
    from rastalign.pipelines.stack_report import acquired, load_rows, write_stack_report

    t0 = time.perf_counter()
    paths = [str(p) for p in moving_paths]
    reference_path = str(reference_path)
    _check_scenes(paths)
    kind = "fits" if is_fits_file(reference_path) else "raster"
    # an option of the other kind, or unknown, is refused before any work
    s = split_options(dict(options, scheduler=scheduler, n_workers=n_workers, threads_per_worker=threads_per_worker,
                           progress=progress), kind)
    output_dir = _prepare_dir(output_dir)
    if kind == "raster":
        fmt = s.output.output_format or "GTiff"
        suffix = RASTER_SUFFIXES[fmt]
        check_remote_format(f"{output_dir}/x{suffix}", fmt)
    else:
        suffix = ".fits"
        check_remote_format(f"{output_dir}/x{suffix}", "FITS", instead="a local --output-dir")
    outs = output_names(paths, output_dir, suffix)
    if kind == "raster":
        output_format_for(outs[0], s.output.output_format)
    report_json, report_csv = f"{output_dir}/stack_report.json", f"{output_dir}/stack_report.csv"
    plot_path = f"{output_dir}/stack_report.png" if plot else None
    for p in (report_json, report_csv, plot_path):
        if p:
            check_output_path(p, paths + [reference_path], True)
    done = {o for o, p in zip(outs, paths) if skip_existing and _verified(o, o + ".model.json")}
    if not (overwrite or skip_existing):
        clash = [o for o in outs if _exists(o) or _exists(o + ".model.json")]
        if clash:
            raise OutputError(f"{len(clash)} scene output(s) already exist in {output_dir} (e.g. {clash[0]}): "
                              f"use --skip-existing to resume or --overwrite to redo")
    previous = load_rows(report_json) if done else {}
    rows = [None] * len(paths)
    with running(s.run):
        stage("reference")
        shared = _share_reference(kind, reference_path, options)
        todo = [i for i, o in enumerate(outs) if o not in done]
        for i, o in enumerate(outs):
            if o in done:
                rows[i] = dict(previous.get(o) or {"scene": paths[i], "output": o, "model": o + ".model.json",
                                                   "status": "ok"}, reused=True)
        n_workers_here = concurrency or min(MAX_CONCURRENT, max(2, parallelism()))
        n_done, n_failed = len(done), 0
        scenes(n_done, len(paths), 0)
        with _scene_pool(kind, s.run.scheduler, max(1, min(int(n_workers_here), len(todo) or 1)), len(todo)) \
                as (pool, workers):
            if workers == "processes":
                stage("frames in workers")  # their own stages are theirs: the line counts frames
            futures = {pool.submit(_one_scene, kind, paths[i], reference_path, outs[i], shared, options,
                                   overwrite or skip_existing): i for i in todo}
            try:
                for fut in as_completed(futures):
                    i = futures[fut]
                    try:
                        rows[i] = fut.result()  # completions arrive here, in this thread alone
                    except Exception as exc:  # noqa: BLE001 - a worker died, or a frame could not reach it
                        rows[i] = _failure(paths[i], outs[i], exc)
                        if isinstance(exc, BrokenExecutor) and _verified(outs[i], outs[i] + ".model.json"):
                            # done before another worker's death broke the pool: its outputs are whole (published
                            # atomically, the model last), only its figures were lost with the pool
                            log.info("scene %s was finished when a worker died; its figures are lost", paths[i])
                            rows[i] = _row(paths[i], outs[i])
                    n_done, n_failed = n_done + 1, n_failed + (rows[i]["status"] == "failed")
                    scenes(n_done, len(paths), n_failed)
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise
        for r in rows:  # read where the tasks run, as every header is
            r.setdefault("acquired", on_cluster(acquired, r["scene"], kind))
    wall = time.perf_counter() - t0
    result = StackResult(kind, reference_path, output_dir, rows, report_json, report_csv, plot_path, wall,
                         info={"concurrency": int(n_workers_here), "scheduler": str(scheduler), "workers": workers})
    write_stack_report(result)
    return result


@contextlib.contextmanager
def _scene_pool(kind, scheduler, n, n_todo):
    """Where the scenes run; yields ``(executor, "threads" | "processes")``. FITS frames on a local scheduler
    go to forked worker processes (``sep`` and the star fit hold the GIL, so threads align one frame at a
    time) where forking is safe (:func:`~rastalign.runtime.scheduler.fork_context`); every other scene runs in a
    thread, its tasks on the active scheduler."""
    if kind == "fits" and n > 1 and n_todo >= MIN_FRAMES_FOR_PROCESSES and str(scheduler) in ("threads", "processes"):
        with process_pool(n, initializer=_frame_worker) as pool:
            if pool is not None:
                yield pool, "processes"
                return
    with thread_pool(n) as pool:
        yield pool, "threads"


def _frame_worker():
    """A forked frame worker: Ctrl-C and the progress line are the parent's (a frame in flight finishes,
    published whole); a frame's warp runs in this worker's threads (the parent's process pool, if any, is not
    this process's); BLAS on one thread for good (the workers' OpenBLAS threads spin against each other:
    frames took 2.3 s instead of 0.35 s)."""
    import signal

    import dask

    from rastalign.runtime.progress import forget
    from rastalign.runtime.scheduler import local_scheduler, single_threaded_blas

    forget()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    dask.config.set({"scheduler": local_scheduler("threads"), "pool": None})
    single_threaded_blas()


def _share_reference(kind, reference_path, options):
    """What every scene shares: FITS, the template's HDU and detections; rasters, the header and proxy."""
    from rastalign.io.paths import absolute_path

    if kind == "fits":
        from rastalign.pipelines.fits_pair import template_stars

        return {"template": template_stars(reference_path, options.get("template_ext"), **options)}
    from rastalign.io.raster import inspect_raster
    from rastalign.io.proxy import PreparedRaster, SharedProxy, decimation_factor

    est = split_options(options).estimate
    info = inspect_raster(absolute_path(reference_path))
    res = est.solve_resolutions
    finest = None if not res or res[-1] == 0 else res[-1]
    factor = decimation_factor(info.shape, est.max_proxy_size, info.resolution, finest)
    from rastalign.geometry.grids import check_band

    check_band(info, est.fixed_band, "reference")
    return {"reference": PreparedRaster(info, SharedProxy(info, est.fixed_band, factor, est.fixed_nodata))}


def _row(moving, out, status="ok", error="", exit_code=0) -> dict:
    """A scene's row before its figures: a failed one names no output."""
    failed = status == "failed"
    return {"scene": moving, "output": "" if failed else out, "model": "" if failed else out + ".model.json",
            "status": status, "error": error, "exit_code": exit_code, "reused": False}


def _failure(moving, out, exc) -> dict:
    """The row of a scene that raised ``exc`` (in its thread, its worker, or the worker's death): a one-line
    reason and the exit status of its kind."""
    if isinstance(exc, RastalignError):
        return _row(moving, out, "failed", " ".join(str(exc).split())[:300], exc.exit_code)
    if isinstance(exc, OSError):
        return _row(moving, out, "failed", f"{exc.strerror or exc}", 2)
    if isinstance(exc, BrokenExecutor):  # a worker process died (killed, out of memory)
        return _row(moving, out, "failed", f"the worker process aligning it died ({exc})", 1)
    log.debug("scene %s failed", moving, exc_info=exc)  # a bug in one scene must not sink the others
    return _row(moving, out, "failed", f"internal error ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})", 1)


def _one_scene(kind, moving, reference, out, shared, options, replace) -> dict:
    """Align one scene; a failure becomes its row (status, one-line error, exit status), never an exception."""
    from rastalign.pipelines.stack_report import arcsec_shift, scene_row

    t0 = time.perf_counter()
    row = _row(moving, out)
    try:
        if kind == "fits":
            from rastalign.pipelines.fits_pair import align_fits

            res = align_fits(moving, out, template_path=reference, overwrite=replace, scheduler="current",
                             model_out=out + ".model.json", **shared, **options)
            row.update(scene_row(res, arcsec_shift(res, shared["template"][0])))
        else:
            from rastalign.pipelines.pair import align_image_pair

            res = align_image_pair(moving, shared["reference"], out, overwrite=replace, scheduler="current",
                                   progress=False, model_out=out + ".model.json", **options)
            row.update(scene_row(res))
    except Exception as exc:  # noqa: BLE001 - every failure is the scene's row
        row = _failure(moving, out, exc)
    if row["status"] == "failed":
        log.info("scene %s failed: %s", moving, row["error"])
    row["total_s"] = round(time.perf_counter() - t0, 3)
    return row
