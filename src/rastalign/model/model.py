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

import json
import dataclasses
from dataclasses import dataclass, replace
from typing import Optional

import numpy as np

from ..errors import InputError
from .affine import IDENTITY, apply_affine, compose_affine, invert_affine
from .residual import SplineField

FORMAT = "rastalign-model"
VERSION = 1


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
        sx, sy = self.solve_coords(x, y)
        return self.field(sx, sy)

    def __call__(self, x, y):
        """Moving-pixel coordinates ``(xm, ym)`` of output pixels ``(x, y)``."""
        xm, ym = apply_affine(self.linear, x, y)
        dx, dy = self.field_at_output(x, y)
        return xm + dx, ym + dy

    def max_field_displacement(self) -> float:
        if self.field is None:
            return 0.0
        return float(max(np.abs(self.field.coef_x).max(), np.abs(self.field.coef_y).max()))

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
        text = json.dumps(self.to_dict(), indent=indent)
        if path is not None:
            from ..io.atomic import atomic_write_text
            atomic_write_text(path, text)
        return text

    @classmethod
    def from_dict(cls, d) -> "AlignmentModel":
        try:
            if d.get("format") != FORMAT:
                raise ValueError(f"not a rastalign model (format={d.get('format')!r})")
            if int(d.get("version", 0)) > VERSION:
                raise ValueError(f"model version {d['version']} is newer than this rastalign ({VERSION})")
            aff = np.asarray(d["affine"], float).reshape(2, 3)
            pre = np.asarray(d.get("pre", IDENTITY), float).reshape(2, 3)
            if not (np.isfinite(aff).all() and np.isfinite(pre).all()):
                raise ValueError("non-finite coefficients")
            fld = None if d.get("field") is None else SplineField.from_dict(d["field"])
            shp = d.get("output_shape")
            msh = d.get("moving_shape")
            return cls(aff, fld, pre, None if shp is None else tuple(int(s) for s in shp),
                       None if msh is None else tuple(int(s) for s in msh), dict(d.get("meta") or {}))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InputError(f"malformed model JSON: {exc}") from None

    @classmethod
    def from_json(cls, text_or_path) -> "AlignmentModel":
        """Parse a model from a JSON string or a path to a JSON file (data only, never code)."""
        text = str(text_or_path)
        if not text.lstrip().startswith(("{", "[")):
            try:
                with open(text, "r", encoding="utf-8") as fh:
                    text = fh.read()
            except OSError as exc:
                raise InputError(f"cannot read model file {text_or_path}: {exc.strerror}") from None
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"malformed model JSON: {exc}") from None
        if not isinstance(d, dict):
            raise InputError("malformed model JSON: top level is not an object")
        return cls.from_dict(d)

    @classmethod
    def identity(cls, shape=None) -> "AlignmentModel":
        return cls(IDENTITY.copy(), None, IDENTITY.copy(), shape, shape)
