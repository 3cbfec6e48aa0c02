"""Frozen dataclasses for every knob, with defaults and validation.

Option names follow coregix's ``vhr-align-image-pair`` (and spalipy's for FITS) so that
the command-line tools, the Python API and the xarray accessor all take the same words.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import NamedTuple, Optional, Sequence, Tuple

from rastalign.errors import InputError

RESAMPLING = ("nearest", "bilinear", "cubic", "lanczos", "bspline")
SCHEDULERS = ("threads", "processes", "synchronous", "distributed", "current")
OUTPUT_FORMATS = ("GTiff", "COG", "FITS", "Zarr")
# output suffixes each format may be written under (a path without a suffix takes any format)
FORMAT_SUFFIXES = {"GTiff": (".tif", ".tiff"), "COG": (".tif", ".tiff"), "FITS": (".fits", ".fit", ".fts"),
                   "Zarr": (".zarr",)}


def _check_max_error(v):
    if v is not None and not float(v) > 0:
        raise InputError(f"--max-error-px is a positive number of pixels; got {v}")


@dataclass(frozen=True)
class EstimateParams:
    """How tie points are measured and the model is fitted.

    ``band_index`` / ``moving_band_index`` / ``fixed_band_index`` are **0-based**, as in
    coregix (default band 0); the per-image indexes override ``band_index``.
    ``solve_resolutions`` are pixel sizes in the rasters' CRS units, coarse to fine;
    ``0`` means native.
    """

    band_index: int = 0
    moving_band_index: Optional[int] = None
    fixed_band_index: Optional[int] = None
    use_edge_proxies: bool = True
    moving_nodata: Optional[float] = None
    fixed_nodata: Optional[float] = None
    min_valid_fraction: float = 0.01
    enforce_mutual_valid_mask: bool = True
    solve_resolutions: Optional[Tuple[float, ...]] = None
    clip_fixed_to_moving: bool = True
    max_proxy_size: int = 2048
    window: int = 96
    min_window_valid_fraction: float = 0.8
    min_reliability: float = 0.5
    residual_model: str = "auto"  # "auto", "none", "spline"
    max_tie_points: int = 1024
    seed: int = 0
    min_inliers: int = 6
    max_rms_px: float = 1.0
    max_error_px: Optional[float] = None  # the accuracy gate: predicted model error p95 (moving px)

    def __post_init__(self):
        _check_max_error(self.max_error_px)
        for name in ("band_index", "moving_band_index", "fixed_band_index"):
            v = getattr(self, name)
            if v is not None and int(v) < 0:
                raise InputError(f"--{name.replace('_', '-')} is 0-based and must be >= 0; got {v}")
        if not 0.0 < self.min_valid_fraction <= 1.0:
            raise InputError(f"--min-valid-fraction is a fraction above 0 and at most 1; got {self.min_valid_fraction}")
        if self.residual_model not in ("auto", "none", "spline"):
            raise InputError(f"residual_model must be auto, none or spline; got {self.residual_model!r}")
        if self.solve_resolutions is not None:
            res = tuple(float(r) for r in self.solve_resolutions)
            if not res or any(r < 0 for r in res):
                raise InputError(f"--solve-resolutions must be positive numbers; got {self.solve_resolutions}")
            object.__setattr__(self, "solve_resolutions", res)

    @property
    def moving_band(self) -> int:
        """0-based band of the moving image used for estimation."""
        return int(self.band_index if self.moving_band_index is None else self.moving_band_index)

    @property
    def fixed_band(self) -> int:
        """0-based band of the fixed image used for estimation."""
        return int(self.band_index if self.fixed_band_index is None else self.fixed_band_index)


@dataclass(frozen=True)
class WarpParams:
    """How the moving image's pixels are resampled onto the output grid, chunk by chunk."""

    resampling: str = "cubic"
    split_factor: Optional[int] = None
    chunks: Optional[Tuple[int, int]] = None
    output_nodata: Optional[float] = None
    trim_edge_invalid: bool = False
    edge_trim_depth: int = 8
    max_chunk_mb: float = 64.0

    def __post_init__(self):
        if self.resampling not in RESAMPLING:
            raise InputError(f"--resampling must be one of {', '.join(RESAMPLING)}; got {self.resampling!r}")
        if self.split_factor is not None and not 0 <= int(self.split_factor) <= 16:
            raise InputError(f"--split-factor must be between 0 and 16; got {self.split_factor}")
        if self.chunks is not None and all(isinstance(c, (tuple, list)) for c in self.chunks):
            # dask-style ragged chunks ((rows...), (cols...)), from Python
            ch = tuple(tuple(int(v) for v in c) for c in self.chunks)
            if len(ch) != 2 or any(v < 1 for c in ch for v in c):
                raise InputError(f"chunks takes ((rows...), (cols...)) of positive sizes; got {self.chunks}")
            object.__setattr__(self, "chunks", ch)
        elif self.chunks is not None:
            ch = tuple(int(c) for c in self.chunks)
            if len(ch) == 1:
                ch = (ch[0], ch[0])
            if len(ch) != 2 or min(ch) < 16:
                raise InputError(f"--chunks takes one or two sizes of at least 16 px; got {self.chunks}")
            object.__setattr__(self, "chunks", ch)
        if self.edge_trim_depth < 1:
            raise InputError(f"--edge-trim-depth is a positive number of pixels; got {self.edge_trim_depth}")


CORRECTIONS = {"raster": ("resample", "georef"), "fits": ("resample", "wcs")}


@dataclass(frozen=True)
class OutputParams:
    """What is written: the format (else from the suffix), the correction (``resample`` the pixels, or keep
    them and correct the georeference: ``georef`` for rasters, ``wcs`` for FITS frames), the grid it is on,
    and whether an existing output is replaced."""

    output_format: Optional[str] = None
    correction: str = "resample"
    output_on_moving_grid: bool = True
    overwrite: bool = False

    def __post_init__(self):
        if self.output_format is not None:
            canon = {f.lower(): f for f in OUTPUT_FORMATS}.get(str(self.output_format).lower())
            if canon is None:
                raise InputError(f"--output-format must be one of {', '.join(OUTPUT_FORMATS)} (any case); "
                                 f"got {self.output_format!r}")
            object.__setattr__(self, "output_format", canon)
        if self.correction not in {c for cs in CORRECTIONS.values() for c in cs}:
            raise InputError(f"--correction must be resample, georef (rasters) or wcs (FITS); got {self.correction!r}")


@dataclass(frozen=True)
class RunParams:
    """Where the work runs: a dask scheduler by name or a cluster's address (``tcp://host:8786``), the workers
    of a local cluster, and whether a progress bar is drawn."""

    scheduler: str = "threads"
    n_workers: Optional[int] = None
    threads_per_worker: Optional[int] = None
    progress: bool = False

    def __post_init__(self):
        sched = self.scheduler
        if sched not in SCHEDULERS and "://" not in sched:
            raise InputError(
                f"--scheduler must be one of {', '.join(SCHEDULERS)} or an address like tcp://host:8786; got {sched!r}")


class Settings(NamedTuple):
    """Flat options sorted by :func:`split_options`: what each layer reads, and the kind's extras."""

    estimate: object  # EstimateParams (rasters) or StarParams (FITS frames)
    warp: WarpParams
    output: OutputParams
    run: RunParams
    extra: dict


@dataclass(frozen=True)
class StarParams:
    """How FITS frames are aligned by their stars: spalipy's options, names and defaults.

    ``n_det`` keeps the N brightest detections (an int) or a fraction in (0, 1];
    ``min_sep=None`` means ``2 * max_match_dist``; ``min_n_match=None`` accepts a match of half the
    smaller detection list (at least 8, at most spalipy's 100), so frames with few stars align, while a
    value given keeps spalipy's meaning; ``spline_order > 0`` turns on the
    cross-validated residual field; ``interp_order`` 0 nearest, 1 bilinear, 2-5 the
    prefiltered cubic B-spline. ``max_rms`` is the quality gate on the inlier RMS (px).
    """

    n_det: Optional[float] = None
    n_quad_det: int = 20
    min_quad_sep: float = 50.0
    max_match_dist: float = 3.0
    min_n_match: Optional[int] = None  # None: auto (see tiepoints.quads.required_matches); spalipy's meaning when set
    sub_tile: int = 1
    max_quad_cand: int = 10
    patience_quad_cand: int = 2
    max_quad_hash_dist: float = 0.005
    quad_edge_buffer: float = 0.0
    spline_order: int = 3
    interp_order: int = 3
    sep_thresh: float = 5.0
    min_fwhm: float = 1.0
    bad_flag_bits: int = 0
    min_sep: Optional[float] = None
    preserve_footprints: bool = False
    output_shape: Optional[Tuple[int, int]] = None
    cval: float = float("nan")
    cval_mask: int = 1
    seed: int = 0
    max_rms: float = 1.0
    max_error_px: Optional[float] = None  # the accuracy gate: predicted model error p95 (source px)

    def __post_init__(self):
        _check_max_error(self.max_error_px)
        if self.min_sep is None:
            object.__setattr__(self, "min_sep", 2.0 * float(self.max_match_dist))
        for k in ("max_match_dist", "max_quad_hash_dist"):
            if not float(getattr(self, k)) > 0:
                raise InputError(f"--{k.replace('_', '-')} must be > 0; got {getattr(self, k)}")
        for k in ("n_quad_det", "sub_tile", "max_quad_cand", "min_n_match"):
            if getattr(self, k) is not None and int(getattr(self, k)) < 1:
                raise InputError(f"--{k.replace('_', '-')} must be >= 1; got {getattr(self, k)}")
        if int(self.n_quad_det) < 4:
            raise InputError(f"--n-quad-det must be >= 4 (a quad has 4 stars); got {self.n_quad_det}")
        try:
            ok = int(self.interp_order) == float(self.interp_order) and 0 <= int(self.interp_order) <= 5
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise InputError(f"--interp-order must be an integer 0..5; got {self.interp_order!r}")

    @classmethod
    def from_options(cls, options: dict) -> "StarParams":
        """From keyword options; an unknown name raises :class:`InputError`."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(options) - names
        if unknown:
            raise InputError(f"unknown option(s): {', '.join(sorted(unknown))}")
        return cls(**options)


STAR_DEFAULTS = StarParams()


def check_remote_format(path, fmt, instead="GTiff, COG or a .zarr store there, or a local file"):
    """Object storage takes GeoTIFF, COG and Zarr: another format to a URL is refused in one line."""
    if "://" in str(path) and fmt not in ("Zarr", "GTiff", "COG"):
        raise InputError(f"writing {fmt} to {str(path).split('://')[0]}:// is not supported yet: write {instead}")


def output_format_for(path, given=None) -> str:
    """The output format: ``given`` (any case), else from the suffix (``.cog.tif`` COG, ``.tif`` GTiff,
    ``.fits`` FITS, ``.zarr`` Zarr; GTiff without a suffix). A suffix that does not match the format,
    or that no format writes (``.png``), is refused: the file would lie about its content."""
    name = str(path).rstrip("/").lower()
    suffix = "." + name.rsplit(".", 1)[1] if "." in name.rsplit("/", 1)[-1] else ""
    if given is not None:
        fmt = OutputParams(output_format=given).output_format
    elif name.endswith((".cog.tif", ".cog.tiff")):
        fmt = "COG"
    else:
        fmt = next((f for f, sfx in FORMAT_SUFFIXES.items() if suffix in sfx), "GTiff")
    check_remote_format(path, fmt)
    if suffix and suffix not in FORMAT_SUFFIXES[fmt]:
        raise InputError(f"output suffix {suffix!r} does not match the {fmt} format (use "
                         f"{' or '.join(FORMAT_SUFFIXES[fmt])}, or another format: --output-format; "
                         f"output_format= or to_raster's format= from Python)")
    return fmt


INTERP = {0: "nearest", 1: "bilinear", 2: "bspline", 3: "bspline", 4: "bspline", 5: "bspline"}
# what each kind takes beside its estimation and warp settings: outputs and where the inputs are
EXTRA = {"raster": {"temp_dir", "keep_temp_dir", "model_out", "report_out", "plot", "log_to_console", "like",
                    "output_crs", "output_resolution"},
         "fits": {"source_ext", "template_ext", "source_cat", "template_cat", "write_mask", "source_mask_ext",
                  "model_out"}}


def resampling_for(interp_order):
    """spalipy's ``interp_order`` (0-5) -> warp kernel name (0 nearest, 1 bilinear, 2-5 prefiltered cubic B-spline)."""
    try:
        return INTERP[int(interp_order)]
    except (KeyError, ValueError, TypeError):
        raise InputError(f"--interp-order must be an integer 0..5; got {interp_order!r}") from None


def split_options(options: dict, kind: str = "raster") -> Settings:
    """The one validator of flat ``**options``: the :class:`Settings` each layer reads.

    ``kind`` ``"raster"`` gives :class:`EstimateParams`, ``"fits"`` :class:`StarParams` (and the warp's
    resampling follows ``interp_order`` unless given). ``extra`` holds the kind's outputs and input extras
    (:data:`EXTRA`). An unknown name, or one of the other kind, raises :class:`InputError`: a typo never
    passes silently.
    """
    est_cls = StarParams if kind == "fits" else EstimateParams
    classes = (est_cls, WarpParams, OutputParams, RunParams)
    names = [{f.name for f in dataclasses.fields(c)} for c in classes]
    options = dict(options)
    if "solve_resolution" in options and kind == "raster":  # coregix 0.1's singular spelling
        options["solve_resolutions"] = options.pop("solve_resolution")
    parts, extra = [{} for _ in classes], {}
    for k, v in options.items():
        i = next((i for i, n in enumerate(names) if k in n), None)
        if i is not None:
            parts[i][k] = v
        elif k in EXTRA[kind]:
            extra[k] = v
        else:
            other = "FITS frames" if kind == "fits" else "rasters"
            raise InputError(f"unknown option {k!r} (for {other})")
    est = est_cls(**parts[0])
    if kind == "fits":
        parts[1].setdefault("resampling", resampling_for(est.interp_order))
    out = OutputParams(**parts[2])
    if out.correction not in CORRECTIONS[kind]:
        what = "FITS frames" if kind == "fits" else "rasters"
        raise InputError(f"--correction must be {' or '.join(CORRECTIONS[kind])} for {what}; got {out.correction!r}")
    return Settings(est, WarpParams(**parts[1]), out, RunParams(**parts[3]), extra)


def chunk_shape_from_split_factor(shape: Sequence[int], k: int) -> Tuple[int, int]:
    """Chunk (rows, cols) for ``--split-factor k``: 2**k chunks laid out as
    2**ceil(k/2) columns x 2**floor(k/2) rows (0 = one chunk)."""
    ny, nx = int(shape[0]), int(shape[1])
    ncols = 2 ** ((k + 1) // 2)
    nrows = 2 ** (k // 2)
    return max(1, -(-ny // nrows)), max(1, -(-nx // ncols))
