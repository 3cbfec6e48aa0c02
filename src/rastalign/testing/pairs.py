"""Synthetic image pairs with an exact, known truth mapping, and the yardsticks to score them.

A *scene* is a periodic, band-limited random texture with a natural (power-law)
spectrum, sampled anywhere with a periodic cubic B-spline, so that any scene size can
be generated tile by tile with no seams. The **truth** is the pull map ``T``: fixed
pixel ``p`` -> moving pixel ``T(p)`` (the convention of :class:`AlignmentModel`).
The moving image is ``M(q) = S(T^-1(q))`` and the fixed image ``F(p) = S(p)``, so a
perfect alignment on the fixed grid is ``M(T(p)) = F(p)``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Optional

import numpy as np
from scipy import ndimage

from rastalign.geometry.affine import apply_affine, invert_affine

PERIOD = 2048
UTM_TRANSFORM = (0.5, 0.0, 500000.0, 0.0, -0.5, 5800000.0)
UTM_CRS = "EPSG:32633"


@lru_cache(maxsize=4)
def _texture_coef(seed: int, period: int = PERIOD) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((period, period))
    fy = np.fft.fftfreq(period)[:, None]
    fx = np.fft.rfftfreq(period)[None, :]
    f = np.hypot(fx, fy)
    h = (f + 2.0 / period) ** -0.9 * np.exp(-(f / 0.22) ** 2)
    tex = np.fft.irfft2(np.fft.rfft2(noise) * h, s=(period, period))
    tex = (tex - tex.mean()) / tex.std()
    return ndimage.spline_filter(tex, order=3, mode="grid-wrap")


def scene(x, y, seed=0):
    """The continuous scene at (fractional) positions ``x, y`` (unit variance, zero mean)."""
    coef = _texture_coef(seed)
    return ndimage.map_coordinates(coef, [np.asarray(y, float), np.asarray(x, float)], order=3,
                                   mode="grid-wrap", prefilter=False)


@dataclass(frozen=True)
class Truth:
    """Pull map fixed pixel -> moving pixel: ``R(p - c) * scale + c + shift`` then distortion.

    The distortion is applied on the generating side (moving -> fixed): a radial term
    ``k * (q - c) * |q - c|^2`` with ``k`` set so it reaches ``distortion_px`` at the
    corners of a ``shape`` image.
    """

    shape: tuple
    rotation_deg: float = 0.0
    shift: tuple = (0.0, 0.0)
    scale: float = 1.0
    distortion_px: float = 0.0

    @property
    def centre(self):
        return (self.shape[1] - 1) / 2.0, (self.shape[0] - 1) / 2.0

    @property
    def matrix(self):
        """The affine part of the pull map (2x3)."""
        th = np.deg2rad(self.rotation_deg)
        r = self.scale * np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
        c = np.array(self.centre)
        return np.column_stack([r, c + np.asarray(self.shift, float) - r @ c])

    def _k(self):
        cx, cy = self.centre
        rmax = np.hypot(cx, cy)
        return self.distortion_px / rmax ** 3 if rmax else 0.0

    def generate(self, qx, qy):
        """Moving pixel -> fixed pixel (the inverse of the pull map)."""
        cx, cy = self.centre
        k = self._k()
        dx, dy = np.asarray(qx, float) - cx, np.asarray(qy, float) - cy
        r2 = dx * dx + dy * dy
        return apply_affine(invert_affine(self.matrix), qx + k * dx * r2, qy + k * dy * r2)

    def __call__(self, px, py, iterations=30):
        """Fixed pixel -> moving pixel (exact up to the fixed-point tolerance)."""
        ux, uy = apply_affine(self.matrix, px, py)
        if self.distortion_px == 0:
            return ux, uy
        k = self._k()
        cx, cy = self.centre
        qx, qy = ux.copy(), uy.copy()
        for _ in range(iterations):
            dx, dy = qx - cx, qy - cy
            r2 = dx * dx + dy * dy
            qx, qy = ux - k * dx * r2, uy - k * dy * r2
        return qx, qy


def _to_dtype(values, dtype):
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return np.clip(np.rint(values), info.min, info.max).astype(dtype)
    return values.astype(dtype)


def render(truth: Truth, box, role, seed=0, dtype="uint16", gain=300.0, offset=1000.0, noise=0.0, bands=1):
    """Render ``box = (y0, y1, x0, x1)`` of the fixed (``role='fixed'``) or moving image.

    Extra bands are the same scene with a different gain, so every band carries
    the same geometry.
    """
    y0, y1, x0, x1 = box
    gy, gx = np.mgrid[y0:y1, x0:x1].astype(float)
    if role == "moving":
        gx, gy = truth.generate(gx, gy)
    s = scene(gx, gy, seed)
    out = []
    rng = np.random.default_rng([seed, y0, x0, 1 if role == "moving" else 0])
    for b in range(bands):
        v = offset + gain * (1.0 - 0.15 * b) * s
        if noise:
            v = v + rng.normal(0.0, noise * gain, v.shape)
        out.append(_to_dtype(v, dtype))
    return np.stack(out)


@dataclass
class SyntheticPair:
    fixed: np.ndarray  # (bands, rows, cols)
    moving: np.ndarray
    truth: Truth
    transform: tuple = UTM_TRANSFORM
    crs: str = UTM_CRS
    nodata: Optional[float] = None
    meta: dict = field(default_factory=dict)


def make_pair(shape=(1024, 1024), rotation_deg=0.0, shift=(0.0, 0.0), scale=1.0, distortion_px=0.0,
              seed=0, dtype="uint16", noise=0.005, bands=1, nodata=None, moving_hole=None) -> SyntheticPair:
    """An in-memory pair on one grid with a known pull map (see :class:`Truth`).

    ``moving_hole = (y0, y1, x0, x1)`` sets a block of the moving image to ``nodata``
    (or NaN for float dtypes).
    """
    truth = Truth(tuple(shape), rotation_deg, tuple(shift), scale, distortion_px)
    box = (0, shape[0], 0, shape[1])
    fixed = render(truth, box, "fixed", seed, dtype, noise=noise, bands=bands)
    moving = render(truth, box, "moving", seed, dtype, noise=noise, bands=bands)
    if moving_hole is not None:
        y0, y1, x0, x1 = moving_hole
        moving[:, y0:y1, x0:x1] = np.nan if np.dtype(dtype).kind == "f" else nodata
    return SyntheticPair(fixed, moving, truth, nodata=nodata)


def write_pair(folder, shape=(1024, 1024), rotation_deg=0.0, shift=(0.0, 0.0), scale=1.0, distortion_px=0.0,
               seed=0, dtype="uint16", noise=0.005, bands=1, nodata=0, tile=2048, names=("moving.tif", "fixed.tif")):
    """Write a synthetic pair as tiled GeoTIFFs, block by block (any size, bounded memory).

    Returns ``(moving_path, fixed_path, truth)``; a name given as ``None`` is not written (its path is
    ``None``): the fixed image depends only on ``shape`` and ``seed``, so a stack writes it once.
    """
    import rasterio
    from affine import Affine
    from rasterio.windows import Window

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    truth = Truth(tuple(shape), rotation_deg, tuple(shift), scale, distortion_px)
    paths = []
    for role, name in zip(("moving", "fixed"), names):
        if name is None:
            paths.append(None)
            continue
        path = folder / name
        prof = dict(driver="GTiff", width=shape[1], height=shape[0], count=bands, dtype=dtype, crs=UTM_CRS,
                    transform=Affine(*UTM_TRANSFORM), nodata=nodata, tiled=True, blockxsize=512, blockysize=512,
                    compress="deflate", predictor=2 if np.dtype(dtype).kind in "iu" else 3, BIGTIFF="IF_SAFER")
        with rasterio.open(path, "w", **prof) as ds:
            for y0 in range(0, shape[0], tile):
                for x0 in range(0, shape[1], tile):
                    box = (y0, min(y0 + tile, shape[0]), x0, min(x0 + tile, shape[1]))
                    block = render(truth, box, role, seed, dtype, noise=noise, bands=bands)
                    if nodata is not None and np.dtype(dtype).kind in "iu":
                        block[block == nodata] = nodata + 1  # keep data distinct from nodata
                    ds.write(block, window=Window(box[2], box[0], box[3] - box[2], box[1] - box[0]))
        paths.append(path)
    return paths[0], paths[1], truth


def write_stack(folder, truths, shape=(1024, 1024), seed=0, dtype="uint16", bands=1, prefix="scene"):
    """A reference (``reference.tif``) and one moving scene per entry of ``truths`` (keyword arguments of
    :class:`Truth`: ``rotation_deg``, ``shift``, ``scale``, ``distortion_px``), all of one scene on one grid.

    Returns ``(reference_path, [moving_path, ...], [Truth, ...])``.
    """
    _, ref, _ = write_pair(folder, shape, seed=seed, dtype=dtype, bands=bands, names=(None, "reference.tif"))
    scenes = [write_pair(folder, shape, seed=seed, dtype=dtype, bands=bands, names=(f"{prefix}_{i:02d}.tif", None), **t)
              for i, t in enumerate(truths)]
    return ref, [m for m, _, _ in scenes], [tr for _, _, tr in scenes]


# ---------------------------------------------------------------------------------- yardsticks
def _parabolic(cm, c0, cp):
    den = cm - 2 * c0 + cp
    return 0.0 if den == 0 else 0.5 * (cm - cp) / den


def window_shift(a, b, iterations=4, margin=8):
    """Shift ``(dx, dy)`` such that ``a(p) ~ b(p + shift)``.

    Integer peak of the Hann-windowed cross-correlation with a parabolic sub-pixel
    step, then iterated least-squares matching: ``b`` is resampled at ``p + shift``
    with a cubic spline and the shift is updated by Gauss-Newton on the inner window.
    """
    a = np.asarray(a, float)
    b = np.asarray(b, float)
    ny, nx = a.shape
    win = np.outer(np.hanning(ny), np.hanning(nx))
    fa = np.fft.fft2((a - a.mean()) * win)
    fb = np.fft.fft2((b - b.mean()) * win)
    cc = np.fft.fftshift(np.real(np.fft.ifft2(np.conj(fa) * fb)))
    iy, ix = np.unravel_index(np.argmax(cc), cc.shape)
    iy = int(np.clip(iy, 1, ny - 2)); ix = int(np.clip(ix, 1, nx - 2))
    sx = ix - nx // 2 + _parabolic(cc[iy, ix - 1], cc[iy, ix], cc[iy, ix + 1])
    sy = iy - ny // 2 + _parabolic(cc[iy - 1, ix], cc[iy, ix], cc[iy + 1, ix])
    coef = ndimage.spline_filter(b, order=3, mode="mirror")
    inner = (slice(margin, ny - margin), slice(margin, nx - margin))
    gy, gx = np.mgrid[0:ny, 0:nx].astype(float)
    ai = a[inner]
    for _ in range(iterations):
        bw = ndimage.map_coordinates(coef, [gy + sy, gx + sx], order=3, mode="mirror", prefilter=False)
        by, bx = np.gradient(bw)
        bi, bxi, byi = bw[inner], bx[inner], by[inner]
        # photometric gain/offset absorbed by regressing on [bx, by, bw, 1]
        design = np.column_stack([bxi.ravel(), byi.ravel(), bi.ravel(), np.ones(bi.size)])
        sol, *_ = np.linalg.lstsq(design, (ai - bi).ravel(), rcond=None)
        # a - b ~ bx*ddx + by*ddy + gain*b + offset -> b(p + s + d) ~ a when shifted by +d
        sx += sol[0]
        sy += sol[1]
        if abs(sol[0]) < 1e-5 and abs(sol[1]) < 1e-5:
            break
    return sx, sy


def measure_misregistration(aligned, reference, valid=None, window=128, step=None, min_ncc=None):
    """Residual shifts between an aligned image and its reference, window by window.

    Returns an array (n, 4) of ``(x_centre, y_centre, dx, dy)`` for every window fully
    inside ``valid`` (both images' validity, True = usable) and, with ``min_ncc``, whose
    correlation is at least that (to skip clouds and changes in real pairs). This is the yardstick the
    acceptance figures use: an independent windowed cross-correlation, not the
    pipeline's own tie-point estimator.
    """
    aligned = np.asarray(aligned, float)
    reference = np.asarray(reference, float)
    step = step or window
    rows = []
    for y0 in range(0, aligned.shape[0] - window + 1, step):
        for x0 in range(0, aligned.shape[1] - window + 1, step):
            sl = (slice(y0, y0 + window), slice(x0, x0 + window))
            if valid is not None and not valid[sl].all():
                continue
            a, r = aligned[sl], reference[sl]
            if r.std() == 0 or a.std() == 0:
                continue
            if min_ncc is not None and np.corrcoef(a.ravel(), r.ravel())[0, 1] < min_ncc:
                continue
            dx, dy = window_shift(r, a)
            rows.append((x0 + window / 2 - 0.5, y0 + window / 2 - 0.5, dx, dy))
    return np.array(rows).reshape(-1, 4)


def summarize(shifts):
    """median, p95, max and RMS of the shift magnitudes from :func:`measure_misregistration`."""
    if len(shifts) == 0:
        return {"n_windows": 0}
    mag = np.hypot(shifts[:, 2], shifts[:, 3])
    return {"n_windows": int(len(mag)), "median_px": float(np.median(mag)), "p95_px": float(np.percentile(mag, 95)),
            "max_px": float(mag.max()), "rms_px": float(np.sqrt(np.mean(mag ** 2)))}


def model_error(model, truth, output_shape, step=32, margin=0, moving_shape=None):
    """Distance (moving px) between ``model`` and the truth pull map on a grid of output pixels; with
    ``moving_shape``, only at the output pixels whose true moving place lies inside the moving image (the
    valid overlap), as a 1-D array."""
    ys = np.arange(margin, output_shape[0] - margin, step, dtype=float)
    xs = np.arange(margin, output_shape[1] - margin, step, dtype=float)
    gx, gy = np.meshgrid(xs, ys)
    tx, ty = truth(gx, gy)
    if moving_shape is not None:
        inside = (tx >= 0) & (ty >= 0) & (tx <= moving_shape[1] - 1) & (ty <= moving_shape[0] - 1)
        gx, gy, tx, ty = gx[inside], gy[inside], tx[inside], ty[inside]
    mx, my = model(gx, gy)
    return np.hypot(mx - tx, my - ty)


def write_grid_pair(folder, truth: Truth, moving_grid, fixed_grid, seed=0, dtype="uint16", supersample=4,
                    names=("moving.tif", "fixed.tif")):
    """A pair on arbitrary grids and CRS: ``*_grid = (shape, transform, crs)``.

    The scene lives on the *reference pixel grid* of ``truth``: the moving grid's pixels
    scaled to ``scene_pixel_size`` = the moving pixel size. The moving image is
    ``S(truth.generate(q))``; each fixed pixel is the mean of ``supersample**2`` scene
    samples over its footprint (no aliasing at coarse resolution). Returns
    ``(moving_path, fixed_path, pull)`` where ``pull(x_fixed, y_fixed)`` gives the true
    moving pixel of fixed pixel centres (through PROJ and the truth).
    """
    import rasterio
    from affine import Affine
    from pyproj import CRS, Transformer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    mshape, mt, mcrs = moving_grid
    fshape, ft, fcrs = fixed_grid
    inv_m = ~Affine(*mt)
    tr = Transformer.from_crs(CRS.from_user_input(fcrs), CRS.from_user_input(mcrs), always_xy=True)

    def fixed_to_scene(cx, cy):
        """Fixed pixel (corner-based continuous coords) -> scene (= reference moving-grid) pixel centres."""
        wx, wy = Affine(*ft) @ (cx, cy)
        ux, uy = tr.transform(wx, wy)
        sx, sy = inv_m @ (ux, uy)
        return np.asarray(sx) - 0.5, np.asarray(sy) - 0.5

    gy, gx = np.mgrid[0:mshape[0], 0:mshape[1]].astype(float)
    sx, sy = truth.generate(gx, gy)
    moving = _to_dtype(1000.0 + 300.0 * scene(sx, sy, seed), dtype)[None]
    acc = np.zeros(fshape)
    fy, fx = np.mgrid[0:fshape[0], 0:fshape[1]].astype(float)
    for j in range(supersample):
        for i in range(supersample):
            ox, oy = (i + 0.5) / supersample, (j + 0.5) / supersample
            s_x, s_y = fixed_to_scene(fx + ox, fy + oy)
            acc += scene(s_x, s_y, seed)
    fixed = _to_dtype(1000.0 + 300.0 * acc / supersample ** 2, dtype)[None]
    paths = []
    for name, arr, (shape, t, crs) in zip(names, (moving, fixed), (moving_grid, fixed_grid)):
        with rasterio.open(folder / name, "w", driver="GTiff", width=shape[1], height=shape[0], count=1,
                           dtype=dtype, crs=crs, transform=Affine(*t), tiled=True, blockxsize=256,
                           blockysize=256) as ds:
            ds.write(arr)
        paths.append(folder / name)

    def pull(x, y):
        s_x, s_y = fixed_to_scene(np.asarray(x, float) + 0.5, np.asarray(y, float) + 0.5)
        return truth(s_x, s_y)

    return paths[0], paths[1], pull
