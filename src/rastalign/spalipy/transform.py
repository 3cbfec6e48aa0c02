"""spalipy's transform objects, exact for rastalign's models.

spalipy describes its fit with an ``AffineTransform`` (a *similarity*: rotation, isotropic
scale and shift, ``[x', y'] = [[a, -b], [b, a]] [x, y] + [c, d]``, mapping **source px ->
template px**) and a spline callable (the residual offsets). rastalign fits a *full* affine
(6 parameters) plus a regularised residual field, as a pull map template px -> source px.
The classes here give rastalign's fit spalipy's attribute names and methods; every method
is exact for the full affine. Coordinates are ``(x, y)``, 0-based, pixel centres at integers.
"""
from __future__ import annotations

from functools import partial

import numpy as np

from rastalign.geometry.affine import apply_affine, invert_affine


def _similarity_matrix(v):
    a, b, c, d = (float(t) for t in np.asarray(v, float).ravel()[:4])
    return np.array([[a, -b, c], [b, a, d]])


def nearest_similarity(matrix, anchor=(0.0, 0.0)):
    """spalipy's ``v = (a, b, c, d)`` of the similarity nearest to the 2x3 affine ``matrix``.

    The linear part ``[[a, -b], [b, a]]`` is the closest one in the Frobenius norm
    (``a = (m00 + m11) / 2``, ``b = (m10 - m01) / 2``); the shift ``(c, d)`` makes it agree
    with ``matrix`` at ``anchor``. For a matrix that *is* a similarity, ``v`` is exact.
    """
    m = np.asarray(matrix, float).reshape(2, 3)
    a = 0.5 * (m[0, 0] + m[1, 1])
    b = 0.5 * (m[1, 0] - m[0, 1])
    p = np.asarray(anchor, float)
    fx, fy = m[:, :2] @ p + m[:, 2]
    return np.array([a, b, fx - (a * p[0] - b * p[1]), fy - (b * p[0] + a * p[1])])


def on_points(func, xy):
    """``func(x, y) -> (x', y')`` over spalipy's layouts: ``(N, 2)`` points, or a ``(2, ...)`` stack of x and y
    arrays; the result in the same layout."""
    xy = np.asarray(xy, float)
    points = xy.ndim == 2
    x, y = (xy[:, 0], xy[:, 1]) if points else (xy[0], xy[1])
    return np.stack(func(x, y), axis=1 if points else 0)


class AffineTransform:
    """spalipy's ``AffineTransform``, exact for a full affine: **source px -> template px**, ``(x, y)``.

    ``AffineTransform(v)`` with ``v = (a, b, c, d)`` is spalipy's similarity
    ``[x', y'] = [[a, -b], [b, a]] [x, y] + [c, d]``. :meth:`from_matrix` wraps a full
    2x3 affine (rastalign's fit): then ``v`` holds spalipy's ``(scale*cos, scale*sin, tx, ty)``
    parameterisation of the *nearest similarity* (the Frobenius-nearest rotation and isotropic
    scale, shifted to agree with the affine at ``anchor``, the centroid of the matched source
    stars, where the fit is best constrained), and ``scale``/``rotation`` are read from ``v``
    as in spalipy; :attr:`matrix`, :meth:`matrix_form`, :meth:`apply_transform`,
    :meth:`inverse` and ``np.asarray(t)`` (the 2x3 matrix) use the full affine, exactly.
    ``rotation`` is in degrees.
    """

    def __init__(self, v, matrix=None, anchor=(0.0, 0.0)):
        self.anchor = np.asarray(anchor, float)
        if matrix is None:
            self.matrix = _similarity_matrix(v)
            self.v = np.asarray(v, float).ravel()[:4].copy()
        else:
            self.matrix = np.asarray(matrix, float).reshape(2, 3).copy()
            self.v = nearest_similarity(self.matrix, self.anchor)

    @classmethod
    def from_matrix(cls, matrix, anchor=(0.0, 0.0)):
        """A full 2x3 affine (source px -> template px); ``v`` is its nearest similarity at ``anchor``."""
        return cls(None, matrix=matrix, anchor=anchor)

    @property
    def scale(self):
        """Isotropic scale of the similarity ``v``: the length of ``(a, b)``."""
        return float(np.hypot(self.v[0], self.v[1]))

    @property
    def rotation(self):
        """Angle of the similarity ``v`` in degrees, counter-clockwise from +x towards +y."""
        return float(np.degrees(np.arctan2(self.v[1], self.v[0])))

    @property
    def is_similarity(self):
        """Whether the full affine is a similarity (then ``v`` describes it exactly)."""
        return bool(np.allclose(self.matrix, _similarity_matrix(self.v), rtol=0, atol=1e-12))

    def inverse(self):
        """The inverse transform (template px -> source px), exact; its anchor is the image of this one's."""
        return AffineTransform.from_matrix(invert_affine(self.matrix), apply_affine(self.matrix, *self.anchor))

    def matrix_form(self):
        """``(2x2 linear part, offset)`` of the full affine, in ``(x, y)`` order (spalipy's layout)."""
        return self.matrix[:, :2].copy(), self.matrix[:, 2].copy()

    def apply_transform(self, xy):
        """Transform ``(N, 2)`` points, or a ``(2, ...)`` stack of x and y arrays (spalipy's layouts)."""
        return on_points(partial(apply_affine, self.matrix), xy)

    def __array__(self, dtype=None, copy=None):
        return np.array(self.matrix, dtype=dtype)

    def __repr__(self):
        return (f"AffineTransform(v={np.array2string(self.v, precision=6)}, scale={self.scale:.6f}, "
                f"rotation={self.rotation:.4f} deg, similarity={self.is_similarity})")


class SplineTransform:
    """spalipy's spline callable over rastalign's residual field: ``t(xy, relative=False)``.

    The field gives, at **output (template) px**, the offsets (source px) that the model adds
    to the affine's image: ``source = affine_inverse(xy) + t(xy, relative=True)``, exactly.
    ``relative=False`` returns ``xy`` plus those offsets. Layouts as :class:`AffineTransform`.
    ``field`` is the :class:`~rastalign.model.SplineField` (on the template grid); ``model`` the
    whole :class:`~rastalign.model.AlignmentModel`.
    """

    def __init__(self, model):
        self.model = model
        self.field = model.field

    def offsets(self, x, y):
        return self.model.field_at_output(np.asarray(x, float), np.asarray(y, float))

    def __call__(self, xy, relative=False):
        def moved(x, y):
            dx, dy = self.offsets(x, y)
            return (dx, dy) if relative else (x + dx, y + dy)

        return on_points(moved, xy)


class FieldComponent:
    """One axis of the residual field with the ``.ev(x, y)`` of spalipy's ``sbs_x``/``sbs_y``
    (offsets in source px at output px; spalipy's splines hold template - affine(source) instead)."""

    def __init__(self, spline, axis):
        self.spline, self.axis = spline, int(axis)

    def ev(self, x, y):
        return self.spline.offsets(x, y)[self.axis]

    __call__ = ev
