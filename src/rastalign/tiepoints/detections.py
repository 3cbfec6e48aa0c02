"""Detection tables: astropy Tables, structured arrays and dicts of columns, normalised to one form.

The normal form is a numpy structured array with the columns ``x, y, flux, fwhm, flag``
(:data:`DETECTION_DTYPE`): ``x`` = column and ``y`` = row in **0-based** pixels (pixel centres at
integers), ``flag`` integer. It indexes like an astropy Table (``t["x"]``, ``t[mask]``) without
loading ``astropy.table`` (a fifth of a second of every FITS command's start); the
spalipy-compatible class hands Tables out (:func:`as_table`).
"""
from __future__ import annotations

import logging

import numpy as np

from rastalign.errors import InputError

log = logging.getLogger(__name__)

COLUMNS = ("x", "y", "flux", "fwhm", "flag")
DETECTION_DTYPE = np.dtype([("x", float), ("y", float), ("flux", float), ("fwhm", float), ("flag", np.int64)])

def detection_table(x=(), y=(), flux=(), fwhm=(), flag=()):
    """The normal form from its five columns (empty by default); ``ValueError`` unless all are 1-D and as long."""
    cols = [np.asarray(c) for c in (x, y, flux, fwhm, flag)]
    if any(c.shape != (len(cols[0]),) for c in cols):
        raise ValueError(f"shapes {', '.join(str(c.shape) for c in cols)}")
    t = np.empty(len(cols[0]), DETECTION_DTYPE)
    for name, col in zip(COLUMNS, cols):
        t[name] = col
    return t


def as_table(detections):
    """The normal form as an :class:`astropy.table.Table` (what spalipy's attributes hold)."""
    from astropy.table import Table

    return Table(np.asarray(detections))


def _colnames(table):
    if isinstance(table, np.ndarray) and table.dtype.names:
        return list(table.dtype.names)
    names = getattr(table, "colnames", None)  # an astropy Table
    if names is None and callable(getattr(table, "keys", None)):  # a mapping of columns (or a DataFrame)
        names = list(table.keys())
    if names is None:
        raise InputError("not a table: give an astropy Table, a structured array or a dict of columns")
    return list(names)


def as_detections(table, name="detection table", origin=0):
    """Normalise a table (astropy Table, structured array, dict of columns) to ``x, y, flux, fwhm, flag``.

    ``x, y, flux`` are required; a missing ``fwhm`` becomes NaN (never filtered by
    ``min_fwhm``) and a missing ``flag`` 0. Rows with non-finite x, y or flux are dropped. ``origin``: the
    table's pixel origin (1 for SExtractor's ``X_IMAGE/Y_IMAGE``), subtracted from x and y.
    """
    try:
        names = _colnames(table)
    except InputError as exc:
        raise InputError(f"{name} is {exc}") from None
    cols = {str(c).lower(): c for c in names}
    missing = [c for c in ("x", "y", "flux") if c not in cols]
    if missing:
        raise InputError(f"{name} lacks column(s) {', '.join(missing)} (has: {', '.join(map(str, names)) or 'none'}); "
                         f"needed: x, y, flux (fwhm, flag optional)")
    x = _numeric(table, cols["x"], name) - origin
    n = len(x)

    def col(c, default):
        return _numeric(table, cols[c], name) if c in cols else np.full(n, default, float)

    flag = np.asarray(table[cols["flag"]]) if "flag" in cols else np.zeros(n, np.int64)
    if flag.dtype.kind == "f":
        if not np.all(np.isfinite(flag) & (flag == np.round(flag))):
            raise InputError(f"{name}: column flag must hold integers (it is used as bit flags)")
    elif flag.dtype.kind not in "iub":
        raise InputError(f"{name}: column flag must hold integers, not {flag.dtype}")
    try:
        out = detection_table(x, col("y", 0) - origin, col("flux", 0), col("fwhm", np.nan), flag.astype(np.int64))
    except ValueError as exc:
        raise InputError(f"{name}: columns of unequal length or shape ({exc})") from None
    ok = np.isfinite(out["x"]) & np.isfinite(out["y"]) & np.isfinite(out["flux"])
    if not ok.all():
        log.info("%s: dropping %d row(s) with non-finite x, y or flux", name, int((~ok).sum()))
        out = out[ok]
    return out


def _numeric(table, column, where):
    """A column as floats, or a one-line :class:`InputError` naming it."""
    try:
        return np.asarray(table[column], dtype=float)
    except (ValueError, TypeError):
        raise InputError(f"{where}: column {column} is not numeric") from None
