"""Synthetic star fields with an exact, known mapping (for tests and benchmarks).

Stars live on the *sky*, which is the template grid. The truth is the pull map of
:class:`rastalign.testing.pairs.Truth`: **template (output) pixel -> source pixel**, ``(x, y)``,
pixel centres at integers, 0-based. A star at template position ``p`` appears in the
source at ``truth(p)``. PSFs are Gaussian (integrated exactly over each pixel) or
Moffat (3x3 super-sampled); noise is Gaussian around a flat sky.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.special import erf

from rastalign.testing.pairs import Truth

SQRT2 = np.sqrt(2.0)


@dataclass
class StarField:
    """A star list on the sky (template pixels) plus the truth mapping."""

    xy: np.ndarray  # (n, 2) template positions
    flux: np.ndarray
    truth: Truth
    template_shape: tuple
    source_shape: tuple

    def positions(self, role):
        """Star positions ``(n, 2)`` in the template or source frame."""
        if role == "template":
            return self.xy
        sx, sy = self.truth(self.xy[:, 0], self.xy[:, 1])
        return np.column_stack([sx, sy])


def make_field(template_shape=(1024, 1024), source_shape=None, n_stars=600, rotation_deg=0.0,
               shift=(0.0, 0.0), scale=1.0, distortion_px=0.0, seed=0, flux_range=(3e3, 3e5),
               margin=20.0) -> StarField:
    """Draw ``n_stars`` per template-frame area (power-law fluxes) over the union of both footprints
    plus ``margin`` px."""
    source_shape = tuple(source_shape or template_shape)
    truth = Truth(tuple(template_shape), rotation_deg, tuple(shift), scale, distortion_px)
    ny, nx = source_shape
    cx = np.array([0, nx - 1, 0, nx - 1, (nx - 1) / 2], float)
    cy = np.array([0, 0, ny - 1, ny - 1, (ny - 1) / 2], float)
    tx, ty = truth.generate(cx, cy)
    x0 = min(tx.min(), 0) - margin
    x1 = max(tx.max(), template_shape[1] - 1) + margin
    y0 = min(ty.min(), 0) - margin
    y1 = max(ty.max(), template_shape[0] - 1) + margin
    density = n_stars / float(template_shape[0] * template_shape[1])
    rng = np.random.default_rng(seed)
    n = int(round(density * (x1 - x0) * (y1 - y0)))
    xy = np.column_stack([rng.uniform(x0, x1, n), rng.uniform(y0, y1, n)])
    lo, hi = flux_range
    u = rng.uniform(0, 1, n)
    flux = lo * (hi / lo) ** (u ** 1.5)  # more faint stars than bright ones
    return StarField(xy, flux, truth, tuple(template_shape), source_shape)


def _stamp_gauss(xc, yc, sigma, flux, ix0, iy0, w):
    gx = np.arange(ix0, ix0 + w) - xc
    gy = np.arange(iy0, iy0 + w) - yc
    px = 0.5 * (erf((gx + 0.5) / (SQRT2 * sigma)) - erf((gx - 0.5) / (SQRT2 * sigma)))
    py = 0.5 * (erf((gy + 0.5) / (SQRT2 * sigma)) - erf((gy - 0.5) / (SQRT2 * sigma)))
    return flux * np.outer(py, px)


def _stamp_moffat(xc, yc, fwhm, beta, flux, ix0, iy0, w):
    alpha = fwhm / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))
    sub = (np.arange(3) - 1) / 3.0
    gx = (np.arange(ix0, ix0 + w)[:, None] + sub[None, :]).ravel() - xc
    gy = (np.arange(iy0, iy0 + w)[:, None] + sub[None, :]).ravel() - yc
    r2 = gy[:, None] ** 2 + gx[None, :] ** 2
    prof = (beta - 1) / (np.pi * alpha ** 2) * (1 + r2 / alpha ** 2) ** (-beta)
    return flux * prof.reshape(w, 3, w, 3).mean(axis=(1, 3))


def render_stars(xy, flux, box, fwhm=3.0, psf="gaussian", beta=3.0):
    """Sum of star PSFs over ``box = (y0, y1, x0, x1)``; returns float64 (rows, cols)."""
    y0, y1, x0, x1 = box
    out = np.zeros((y1 - y0, x1 - x0))
    sigma = fwhm / 2.3548
    r = int(np.ceil((4.5 if psf == "gaussian" else 8.0) * sigma)) + 1
    sel = (xy[:, 0] > x0 - r) & (xy[:, 0] < x1 + r) & (xy[:, 1] > y0 - r) & (xy[:, 1] < y1 + r)
    w = 2 * r + 1
    for (xc, yc), f in zip(xy[sel], flux[sel]):
        ix0, iy0 = int(np.floor(xc)) - r, int(np.floor(yc)) - r
        if psf == "gaussian":
            st = _stamp_gauss(xc, yc, sigma, f, ix0, iy0, w)
        else:
            st = _stamp_moffat(xc, yc, fwhm, beta, f, ix0, iy0, w)
        a0, b0 = max(iy0, y0), max(ix0, x0)
        a1, b1 = min(iy0 + w, y1), min(ix0 + w, x1)
        if a1 > a0 and b1 > b0:
            out[a0 - y0:a1 - y0, b0 - x0:b1 - x0] += st[a0 - iy0:a1 - iy0, b0 - ix0:b1 - ix0]
    return out


def render_frame(fieldobj: StarField, role, box=None, fwhm=3.0, psf="gaussian", noise=5.0, sky=100.0,
                 seed=0, dtype="float32", nan_block=None):
    """Render ``box`` of the ``'template'`` or ``'source'`` frame (NaN inside ``nan_block``)."""
    shape = fieldobj.template_shape if role == "template" else fieldobj.source_shape
    box = box or (0, shape[0], 0, shape[1])
    img = render_stars(fieldobj.positions(role), fieldobj.flux, box, fwhm, psf) + sky
    if noise:
        rng = np.random.default_rng([seed, box[0], box[2], 0 if role == "template" else 1])
        img += rng.normal(0.0, noise, img.shape)
    img = img.astype(dtype)
    if nan_block is not None:  # its part inside ``box``, in ``img``'s rows and columns
        y0, y1, x0, x1 = (max(v - o, 0) for v, o in zip(nan_block, (box[0], box[0], box[2], box[2])))
        img[y0:y1, x0:x1] = np.nan
    return img


@dataclass
class StarPair:
    source: np.ndarray
    template: np.ndarray
    truth: Truth
    field: StarField
    meta: dict = field(default_factory=dict)


def make_star_pair(shape=(1024, 1024), n_stars=600, rotation_deg=0.0, shift=(0.0, 0.0), scale=1.0,
                   distortion_px=0.0, seed=0, fwhm=3.0, source_fwhm=None, psf="gaussian", noise=5.0,
                   sky=100.0, nan_block=None, source_shape=None) -> StarPair:
    """An in-memory (source, template) pair; ``nan_block=(y0, y1, x0, x1)`` blanks a source block."""
    f = make_field(shape, source_shape, n_stars, rotation_deg, shift, scale, distortion_px, seed)
    tmpl = render_frame(f, "template", fwhm=fwhm, psf=psf, noise=noise, sky=sky, seed=seed)
    src = render_frame(f, "source", fwhm=source_fwhm or fwhm, psf=psf, noise=noise, sky=sky, seed=seed,
                       nan_block=nan_block)
    return StarPair(src, tmpl, f.truth, f)


def write_star_pair(folder, shape=(1024, 1024), n_stars=600, names=("source.fits", "template.fits"),
                    tile=2048, ext_name=None, header_extra=None, stars=None, **kw):
    """Write a pair as FITS files tile by tile (bounded memory at any size).

    Returns ``(source_path, template_path, StarField)``. With ``ext_name`` the image is
    written in an image extension of that name after an empty primary HDU. The
    template gets a simple TAN WCS so WCS propagation can be tested. ``stars``: a
    :class:`StarField` to render instead of drawing one; a name given as ``None`` is not written.
    """
    from astropy.io import fits

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    render_kw = {k: kw.pop(k) for k in ("fwhm", "psf", "noise", "sky") if k in kw}
    nan_block = kw.pop("nan_block", None)
    src_fwhm = kw.pop("source_fwhm", None)
    seed = kw.pop("seed", 0)
    f = stars or make_field(shape, kw.pop("source_shape", None), n_stars, seed=seed, **kw)
    paths = []
    for role, name in (("source", names[0]), ("template", names[1])):
        if name is None:  # not written: the template depends only on the shape, stars and seed
            paths.append(None)
            continue
        ny, nx = f.source_shape if role == "source" else f.template_shape
        path = folder / name
        hdr = fits.Header([("XTENSION", "IMAGE")] if ext_name else [("SIMPLE", True)])
        hdr.update(BITPIX=-32, NAXIS=2, NAXIS1=nx, NAXIS2=ny)
        if ext_name:  # an image extension after an empty primary HDU
            hdr.update(PCOUNT=0, GCOUNT=1, EXTNAME=ext_name)
            fits.PrimaryHDU().writeto(path, overwrite=True)
        hdr["OBJECT"] = f"synthetic {role}"
        if role == "template":
            hdr.update({"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRPIX1": nx / 2.0, "CRPIX2": ny / 2.0,
                        "CRVAL1": 150.0, "CRVAL2": 2.0, "CDELT1": -1e-5, "CDELT2": 1e-5,
                        "CUNIT1": "deg", "CUNIT2": "deg"})
        for k, v in (header_extra or {}).items():
            hdr[k] = v
        stream = fits.StreamingHDU(str(path), hdr)  # a str: astropy checks a Path's bare name for an existing file
        rkw = dict(render_kw, fwhm=src_fwhm) if role == "source" and src_fwhm else render_kw
        for y0 in range(0, ny, tile):
            y1 = min(y0 + tile, ny)
            stream.write(np.concatenate([render_frame(f, role, (y0, y1, x0, min(x0 + tile, nx)), seed=seed,
                                                      nan_block=nan_block if role == "source" else None, **rkw)
                                         for x0 in range(0, nx, tile)], axis=1).astype(np.float32))
        stream.close()
        paths.append(path)
    return paths[0], paths[1], f


def write_star_stack(folder, truths, shape=(1024, 1024), n_stars=600, seed=0, prefix="frame", margin=64.0, **kw):
    """A template (``template.fits``) and one source frame per entry of ``truths`` (keyword arguments of
    :class:`~rastalign.testing.pairs.Truth`: ``rotation_deg``, ``shift``, ``scale``, ``distortion_px``; and
    ``header_extra``), all of one star list drawn ``margin`` px beyond the template.

    Returns ``(template_path, [source_path, ...], [StarField, ...])``.
    """
    base = make_field(shape, None, n_stars, seed=seed, margin=margin)
    _, tmpl, _ = write_star_pair(folder, shape, names=(None, "template.fits"), stars=base, seed=seed, **kw)
    sources, fields = [], []
    for i, t in enumerate(truths):
        t = dict(t)
        extra = t.pop("header_extra", None)
        f = StarField(base.xy, base.flux, Truth(tuple(shape), **t), tuple(shape), tuple(shape))
        src, _, _ = write_star_pair(folder, shape, names=(f"{prefix}_{i:02d}.fits", None), stars=f, seed=seed,
                                    header_extra=extra, **kw)
        sources.append(src)
        fields.append(f)
    return tmpl, sources, fields


def write_sextractor(table, path, flux_col="FLUX_AUTO"):
    """Write the normal form as an ASCII_HEAD SExtractor catalogue (1-based positions)."""
    names = ["NUMBER", "X_IMAGE", "Y_IMAGE", flux_col, "FWHM_IMAGE", "FLAGS"]
    units = ["", "pixel", "pixel", "count", "pixel", ""]
    lines = [f"#{i + 1:4d} {n:<22s} {'[' + u + ']' if u else ''}" for i, (n, u) in enumerate(zip(names, units))]
    for k, r in enumerate(table, start=1):
        lines.append(f"{k:6d} {r['x'] + 1:12.5f} {r['y'] + 1:12.5f} {r['flux']:14.5f} {r['fwhm']:9.4f} {int(r['flag']):4d}")
    Path(path).write_text("\n".join(lines) + "\n")
