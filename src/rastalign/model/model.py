"""The composite alignment model and its JSON form.

An :class:`AlignmentModel` is a *pull map*: it maps an **output pixel** ``(x, y)`` to
the **moving pixel** whose value belongs there, pixel centres at integer coordinates
(0-based). It is the composition::

    solve = pre(output)                    # output grid -> solve (fixed) grid, affine
    moving = affine(solve) + field(solve)  # robust affine + smooth residual field

``pre`` is the identity when the output is on the fixed grid; when the output is on
the moving grid it is the moving-pixel -> fixed-pixel grid relation from the two
geotransforms. Keeping ``pre`` separate lets one estimate serve any output grid.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, replace
from typing import Optional

import numpy as np

from rastalign.errors import InputError
from rastalign.geometry.affine import IDENTITY, apply_affine, compose_affine, invert_affine
from rastalign.model.residual import SplineField

FORMAT = "rastalign-model"
VERSION = 1
MAX_NODES = 4096  # spline nodes per axis


def _no_constant(name):
    raise ValueError(f"{name} is not a number a model may hold")


def _matrix(value, name):
    m = np.asarray(value, dtype=float)
    if m.shape != (2, 3):
        raise ValueError(f"'{name}' must be a 2x3 matrix, got shape {m.shape}")
    if not np.isfinite(m).all():
        raise ValueError(f"'{name}' has non-finite coefficients")
    return m


def _shape(value, name):
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ValueError(f"'{name}' must be [rows, cols]")
    if not all(isinstance(v, int) and not isinstance(v, bool) and 0 < v < 2 ** 31 for v in value):
        raise ValueError(f"'{name}' must hold two positive integers, got {value}")
    return tuple(value)


def _field(d):
    if not isinstance(d, dict):
        raise ValueError("'field' must be an object")
    nodes = d["nodes"]
    if (not isinstance(nodes, (list, tuple)) or len(nodes) != 2
            or not all(isinstance(n, int) and not isinstance(n, bool) and 2 <= n <= MAX_NODES for n in nodes)):
        raise ValueError(f"field 'nodes' must be two integers in [2, {MAX_NODES}], got {nodes!r}")
    for key in ("origin", "spacing"):
        v = np.asarray(d[key], dtype=float)
        if v.shape != (2,) or not np.isfinite(v).all():
            raise ValueError(f"field '{key}' must be two finite numbers")
    if min(d["spacing"]) <= 0:
        raise ValueError("field 'spacing' must be positive")
    for key in ("coef_x", "coef_y"):
        if not np.isfinite(np.asarray(d[key], dtype=float)).all():
            raise ValueError(f"field '{key}' has non-finite coefficients")
    return SplineField.from_dict(d)


@dataclass(frozen=True)
class AlignmentModel:
    """Output pixel -> moving pixel, ``(x, y)`` order, integer pixel centres."""

    affine: np.ndarray
    field: Optional[SplineField] = None
    pre: np.ndarray = dataclasses.field(default_factory=lambda: IDENTITY.copy())
    output_shape: Optional[tuple] = None  # (ny, nx) of the output grid
    moving_shape: Optional[tuple] = None  # (ny, nx) of the moving grid
    meta: dict = dataclasses.field(default_factory=dict)

    # ------------------------------------------------------------------ evaluation
    @property
    def linear(self) -> np.ndarray:
        """The affine part as one 2x3 matrix from output to moving pixels."""
        return compose_affine(self.affine, self.pre)

    def solve_coords(self, x, y):
        return apply_affine(self.pre, x, y)

    def field_at_output(self, x, y):
        """Residual displacement (moving px) at output pixels; zeros when flat."""
        if self.field is None:
            z = np.zeros(np.shape(x))
            return z, z.copy()
        return self.field(*self.solve_coords(x, y))

    def geometry(self, shape, to_output=IDENTITY, after=IDENTITY):
        """The moving coordinates of a grid of ``shape`` (rows, cols) as a compiled
        :class:`~rastalign._kernels.bspline.Geometry`, computed where they are needed instead of held as two
        arrays of that shape: the grid's pixel ``(c, r)`` is the output pixel ``to_output(c, r)``, and the
        coordinates are ``after`` (an affine of moving px) of the model there. ``to_output``, ``after`` and
        :attr:`pre` scale and translate each axis (no rotation)."""
        from rastalign._kernels.bspline import Geometry

        grid = compose_affine(self.pre, to_output)  # grid pixel -> solve px
        if any(m[0, 1] != 0 or m[1, 0] != 0 for m in (grid, after)):
            raise ValueError("a grid geometry scales and translates each axis; this grid is rotated")
        a = compose_affine(after, compose_affine(self.linear, to_output))
        if self.field is None:
            return Geometry(a, shape)
        xs = grid[0, 0] * np.arange(shape[1], dtype=float) + grid[0, 2]
        ys = grid[1, 1] * np.arange(shape[0], dtype=float) + grid[1, 2]
        return Geometry(a, shape, (self.field.coef_x, self.field.coef_y, *self.field.taps(xs, ys),
                                   (after[0, 0], after[1, 1])))

    def __call__(self, x, y):
        """Moving-pixel coordinates ``(xm, ym)`` of output pixels ``(x, y)``."""
        xm, ym = apply_affine(self.linear, x, y)
        dx, dy = self.field_at_output(x, y)
        return xm + dx, ym + dy

    def field_max_px(self, shape, n=65) -> float:
        """Largest residual-field displacement (moving px) over an output grid of ``shape``, sampled on
        ``n x n`` points (the field is a smooth spline: the samples bound it to well under 0.001 px)."""
        if self.field is None:
            return 0.0
        ny, nx = shape
        gx, gy = np.meshgrid(np.linspace(0, nx - 1, n), np.linspace(0, ny - 1, n))
        dx, dy = self.field_at_output(gx, gy)
        return float(np.hypot(dx, dy).max())

    def with_output_grid(self, pre, output_shape) -> "AlignmentModel":
        """The same geometry seen from another output grid (``pre``: output px -> solve px)."""
        return replace(self, pre=np.asarray(pre, float), output_shape=tuple(output_shape))

    def inverse_points(self, xm, ym, iterations=20):
        """Output pixels that map onto moving pixels ``(xm, ym)`` (fixed-point iteration)."""
        inv = invert_affine(self.linear)
        x, y = apply_affine(inv, xm, ym)
        if self.field is None:
            return x, y
        for _ in range(iterations):
            dx, dy = self.field_at_output(x, y)
            x, y = apply_affine(inv, np.asarray(xm) - dx, np.asarray(ym) - dy)
        return x, y

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "version": VERSION,
            "convention": "output pixel -> moving pixel; (x, y); pixel centres at integers, 0-based",
            "pre": np.asarray(self.pre, float).tolist(),
            "affine": np.asarray(self.affine, float).tolist(),
            "field": None if self.field is None else self.field.to_dict(),
            "output_shape": None if self.output_shape is None else list(self.output_shape),
            "moving_shape": None if self.moving_shape is None else list(self.moving_shape),
            "meta": self.meta,
        }

    def to_json(self, path=None, indent=2) -> str:
        """The model as JSON text (the model file's content; :func:`rastalign.save_model` writes a file)."""
        if path is not None:
            raise TypeError("AlignmentModel.to_json() returns the text; write a model file with "
                            "rastalign.save_model(model, path)")
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, d) -> "AlignmentModel":
        """Build a model from parsed JSON, checking every field (a bad file never yields a bad model)."""
        if not isinstance(d, dict):
            raise InputError("malformed model JSON: top level is not an object")
        try:
            if d.get("format") != FORMAT:
                raise ValueError(f"not a rastalign model (format={d.get('format')!r})")
            if int(d.get("version", 0)) > VERSION:
                raise ValueError(f"model version {d['version']} is newer than this rastalign ({VERSION})")
            if "affine" not in d:
                raise ValueError("missing 'affine'")
            aff = _matrix(d["affine"], "affine")
            pre = _matrix(d.get("pre", IDENTITY.tolist()), "pre")
            for name, m in (("affine", aff), ("pre", pre)):
                if abs(np.linalg.det(m[:, :2])) < 1e-12:
                    raise ValueError(f"'{name}' is singular (it maps the plane onto a line or a point)")
            fld = None if d.get("field") is None else _field(d["field"])
            meta = d.get("meta") or {}
            if not isinstance(meta, dict):
                raise ValueError("'meta' must be an object")
            return cls(aff, fld, pre, _shape(d.get("output_shape"), "output_shape"),
                       _shape(d.get("moving_shape"), "moving_shape"), dict(meta))
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
            raise InputError(f"malformed model JSON: {exc}") from None

    @classmethod
    def from_json(cls, text) -> "AlignmentModel":
        """Parse a model from its JSON text (data only, never code); :func:`rastalign.load_model` reads a
        model file."""
        if not isinstance(text, (str, bytes)) or not text.lstrip()[:1] in ("{", "[", b"{", b"["):
            raise InputError(f"not a model's JSON text: {str(text)[:80]!r} (read a model file with "
                             f"rastalign.load_model(path))")
        try:
            d = json.loads(text, parse_constant=_no_constant)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
            msg = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
            raise InputError(f"malformed model JSON: {msg}") from None
        return cls.from_dict(d)

    @classmethod
    def identity(cls, shape=None) -> "AlignmentModel":
        return cls(IDENTITY.copy(), None, IDENTITY.copy(), shape, shape)
