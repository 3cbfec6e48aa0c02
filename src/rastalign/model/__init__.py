"""Geometric models: robust affine fits, smooth residual fields and their composite."""
from .affine import apply_affine, compose_affine, fit_affine, invert_affine, robust_affine
from .model import AlignmentModel
from .residual import SplineField, fit_residual_field

__all__ = ["AlignmentModel", "SplineField", "apply_affine", "compose_affine", "fit_affine",
           "fit_residual_field", "invert_affine", "robust_affine"]
