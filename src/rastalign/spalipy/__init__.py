"""spalipy's interface on rastalign's engine: the :class:`Spalipy` class (in-memory arrays) and its
transform objects. An adapter: the logic is in :mod:`rastalign.tiepoints` and :mod:`rastalign.warp`."""
from rastalign.spalipy.aligner import Spalipy
from rastalign.spalipy.transform import AffineTransform, SplineTransform

__all__ = ["AffineTransform", "Spalipy", "SplineTransform"]
