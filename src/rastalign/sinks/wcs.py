"""``--correction wcs``: correct a FITS frame's WCS instead of resampling its pixels.

The model is a pull map, template pixel -> source pixel. The new WCS of the source maps each
source pixel ``s`` to the sky where the template's WCS puts ``t(s)``, the template pixel the
model sends to ``s``. The template's projection and reference point (CTYPE, CRVAL) are kept;
CRPIX becomes the source pixel of the template's reference pixel; CD the template's CD times
the local linear map; what the affine does not carry (the residual field, and the template's
own SIP) becomes SIP distortion: forward ``A_p_q``/``B_p_q`` fitted by least squares on a grid
of source pixels, of the order that cross-validation on held-out grid points chooses, and the
inverse ``AP_p_q``/``BP_p_q`` fitted on the same grid. The frame's data and every non-WCS card
are written unchanged; other HDUs are kept. Coordinates here are 0-based ``(x, y)``.
"""
from __future__ import annotations

import numpy as np

from rastalign.errors import InputError, OutputError

ORDERS = (0, 2, 3, 4, 5)  # SIP orders tried (0: none)
MAX_ERROR_PX = 0.05  # the written WCS must reproduce the model to this (template px), else refused


def _terms(order, lowest=2):
    return [(p, q) for n in range(lowest, order + 1) for p in range(n + 1) for q in [n - p]]


def _design(u, v, terms):
    return np.column_stack([u ** p * v ** q for p, q in terms]) if terms else np.zeros((len(u), 0))


def _sip(coef, terms, order, scale):
    """SIP matrix ``[p, q]`` of order ``order`` from the coefficients ``coef`` of ``terms`` in normalised units."""
    out = np.zeros((order + 1, order + 1))
    for c, (p, q) in zip(coef, terms):
        out[p, q] = c / scale ** (p + q)
    return out


def _template_intermediate(tw, tx, ty):
    """The template's pixel offsets from CRPIX after its own SIP (before CD): ``(x, y)`` template px."""
    u, v = tx - (tw.wcs.crpix[0] - 1.0), ty - (tw.wcs.crpix[1] - 1.0)
    if tw.sip is None:
        return u, v
    return tw.sip_pix2foc(np.column_stack([tx, ty]), 0).T  # u + A(u, v): relative to CRPIX already


def _fit(u, v, hx, hy, order, use):
    """Least squares ``h = K [u, v] + P(u, v)`` (P of orders 2..order) over the points ``use``."""
    terms = _terms(order)
    X = np.column_stack([u, v, _design(u, v, terms)])
    coef, *_ = np.linalg.lstsq(X[use], np.column_stack([hx, hy])[use], rcond=None)
    err = np.hypot(*(X @ coef - np.column_stack([hx, hy])).T)
    return coef, terms, err


def fit_wcs(model, source_shape, template_wcs, n=48):
    """The source frame's corrected celestial WCS (``astropy.wcs.WCS`` with SIP when needed) and what
    was measured: the SIP order, its held-out and overall errors (template px) and the inverse's error."""
    from astropy.wcs import WCS, Sip

    tw = template_wcs
    if tw is None or not tw.has_celestial:
        raise InputError("--correction wcs needs a celestial WCS on the template (CTYPE/CRVAL/CD); "
                         "this template has none: use --correction resample")
    ny, nx = source_shape
    gx, gy = np.meshgrid(np.linspace(0, nx - 1, n), np.linspace(0, ny - 1, n))
    sx, sy = gx.ravel(), gy.ravel()
    tx, ty = (np.asarray(a, float) for a in model.inverse_points(sx, sy))
    if model.output_shape is not None:  # where the model has evidence: source pixels that land on the template
        ty_n, tx_n = model.output_shape
        on = (tx >= 0) & (ty >= 0) & (tx <= tx_n - 1) & (ty <= ty_n - 1)
        if on.sum() >= 64:
            sx, sy, tx, ty = sx[on], sy[on], tx[on], ty[on]
    hx, hy = _template_intermediate(tw, tx, ty)
    # the source pixel of the template's reference pixel: there the intermediate coordinates are 0
    rx, ry = (float(np.asarray(a).ravel()[0]) for a in model(np.array([tw.wcs.crpix[0] - 1.0]),
                                                             np.array([tw.wcs.crpix[1] - 1.0])))
    u, v = sx - rx, sy - ry
    scale = float(max(nx, ny))
    un, vn = u / scale, v / scale  # well-conditioned fit; coefficients rescaled after
    held = (np.round(sx / max(nx - 1, 1) * (n - 1)) + np.round(sy / max(ny - 1, 1) * (n - 1))) % 2 == 0
    cv = {}
    for order in ORDERS:
        _, _, err = _fit(un, vn, hx, hy, order, held)
        cv[order] = float(np.sqrt(np.mean(err[~held] ** 2)))
    best = min(cv.values())
    order = next(o for o in ORDERS if cv[o] <= max(1.2 * best, best + 1e-4))
    coef, terms, err = _fit(un, vn, hx, hy, order, np.ones_like(held))
    if float(err.max()) > MAX_ERROR_PX:
        raise OutputError(f"--correction wcs: a SIP polynomial of order <= {ORDERS[-1]} reproduces the model only "
                          f"to {err.max():.3f} px (limit {MAX_ERROR_PX} px); use --correction resample")
    K = coef[:2].T / scale  # h = K (u, v) + P(u, v)
    Kinv = np.linalg.inv(K)
    tc = tw.celestial
    w = WCS(naxis=2)  # fresh: the template's observation cards (dates, site) must not come along
    w.wcs.crval, w.wcs.cunit = tc.wcs.crval, tc.wcs.cunit
    w.wcs.lonpole, w.wcs.latpole = tc.wcs.lonpole, tc.wcs.latpole
    if tc.wcs.radesys:
        w.wcs.radesys, w.wcs.equinox = tc.wcs.radesys, tc.wcs.equinox
    w.wcs.cd = tc.pixel_scale_matrix @ K
    w.wcs.crpix = [rx + 1.0, ry + 1.0]
    ctype = [c.replace("-SIP", "") for c in tc.wcs.ctype]
    info = {"sip_order": order, "cv_rms_px": cv, "max_error_px": float(err.max()),
            "rms_error_px": float(np.sqrt(np.mean(err ** 2))), "inverse_max_error_px": 0.0}
    if order:
        poly = Kinv @ coef[2:].T  # u-space coefficients of K^-1 P, per term (normalised units)
        A, B = (_sip(c, terms, order, scale) for c in poly)
        pq = tuple(np.transpose(terms))
        fu, fv = u + _design(u, v, terms) @ A[pq], v + _design(u, v, terms) @ B[pq]
        inv_terms = _terms(order, lowest=1)
        X = _design(fu / scale, fv / scale, inv_terms)
        ic, *_ = np.linalg.lstsq(X, np.column_stack([u - fu, v - fv]), rcond=None)
        AP, BP = (_sip(c, inv_terms, order, scale) for c in ic.T)
        back = np.hypot(*(X @ ic - np.column_stack([u - fu, v - fv])).T)
        info["inverse_max_error_px"] = float(back.max())
        w.sip = Sip(A, B, AP, BP, w.wcs.crpix)
        ctype = [c + "-SIP" for c in ctype]
    w.wcs.ctype = ctype
    w.wcs.set()
    info["sky_max_error_px"] = _sky_error(w, tw, sx, sy, tx, ty)
    if info["sky_max_error_px"] > MAX_ERROR_PX:
        raise OutputError(f"--correction wcs: the corrected WCS misses the template's sky by "
                          f"{info['sky_max_error_px']:.3f} px (limit {MAX_ERROR_PX} px); use --correction resample")
    return w, info


def _sky_error(w, tw, sx, sy, tx, ty):
    """Largest sky distance (template px) between the new WCS at source pixels and the template's WCS at
    the template pixels the model pairs them with."""
    from astropy.wcs.utils import proj_plane_pixel_scales

    a = np.radians(w.all_pix2world(np.column_stack([sx, sy]), 0))
    b = np.radians(tw.celestial.all_pix2world(np.column_stack([tx, ty]), 0))
    # haversine: exact for the milli-arcsecond separations measured here (arccos of a cosine is not)
    h = np.sin((a[:, 1] - b[:, 1]) / 2) ** 2 + np.cos(a[:, 1]) * np.cos(b[:, 1]) * np.sin((a[:, 0] - b[:, 0]) / 2) ** 2
    sep = np.degrees(2 * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0))))
    return float(sep.max() / np.mean(proj_plane_pixel_scales(tw.celestial)))


def write_wcs(source_path, ext, output_path, wcs, info, template_path=None):
    """Write ``source_path`` with HDU ``ext``'s WCS replaced by ``wcs``: the data, every other card and
    every other HDU unchanged; a HISTORY card says what was done. Published whole (temporary file)."""
    from rastalign.sinks.atomic import discard, local_temp, publish
    from rastalign.io.fits import open_hdul
    from rastalign.io.fits_cards import drop_wcs, is_wcs_key

    tmp = local_temp(output_path, ".fits")
    try:
        with open_hdul(source_path) as hdul:
            hdr = drop_wcs(hdul[ext].header)
            for card in wcs.to_header(relax=True).cards:
                if is_wcs_key(card.keyword):
                    hdr[card.keyword] = (card.value, card.comment)
            hdr["HISTORY"] = (f"rastalign: WCS corrected onto {str(template_path or 'the template')[-40:]}, "
                              f"SIP order {info['sip_order']}, max error {info['max_error_px']:.4f} px")
            hdul.writeto(tmp, overwrite=True, output_verify="silentfix")
        publish(tmp, output_path)
    except OSError as exc:
        raise OutputError(f"cannot write output {output_path}: {exc.strerror or exc}") from None
    finally:
        discard(tmp)
    return {"format": "FITS", "correction": "wcs", **info}
