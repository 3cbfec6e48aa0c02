"""The alignment model: an affine plus a smooth residual field, its robust fit, rebasing onto other
grids and its JSON text. A model maps an **output pixel to a moving pixel** (a pull map), ``(x, y)``,
pixel centres at integers.

Each name is imported on first use (the fits need scipy; a model alone does not)."""
import importlib

_LAZY = {"AlignmentModel": "rastalign.model.model", "SplineField": "rastalign.model.residual",
         "fit_residual_field": "rastalign.model.residual"}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["AlignmentModel", "SplineField", "fit_residual_field"]
