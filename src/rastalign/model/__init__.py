"""Geometric models: robust affine fits, smooth residual fields and their composite.

Each name is imported on first use (the fits need scipy; a model alone does not)."""
import importlib

_LAZY = {"apply_affine": "affine", "compose_affine": "affine", "fit_affine": "affine", "invert_affine": "affine",
         "robust_affine": "affine", "AlignmentModel": "model", "SplineField": "residual",
         "fit_residual_field": "residual"}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["AlignmentModel", "SplineField", "apply_affine", "compose_affine", "fit_affine",
           "fit_residual_field", "invert_affine", "robust_affine"]
