"""The one result of every alignment: the raster pair, the FITS pair, and each scene of a stack."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from rastalign.model.model import AlignmentModel


@dataclass
class AlignmentResult:
    """An alignment done: where its outputs are, the model (output px -> moving px), its quality and report.

    ``quality`` holds at least ``n_tie_points``, ``n_inliers``, ``rms_residual_px`` and
    ``median_residual_px`` (tie points: correlation windows of rasters, matched stars of FITS frames).
    ``report`` holds at least ``correction`` (the plain correction, see
    :func:`rastalign.pipelines.report.plain_correction`) and ``timings_s`` (``estimate_s``,
    ``warp_write_s``, ``total_s``); the raster pair's is the report it writes. ``extra``: what the command
    adds to its summary (a FITS frame's fit statistics, a georeference's or a WCS's description...).
    """

    output_image_path: Optional[str]
    temp_dir: Optional[str]
    model_path: Optional[str]
    model: AlignmentModel
    quality: dict
    report: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    def summary(self) -> dict:
        """The JSON object a command prints."""
        return {"output_image_path": self.output_image_path, "temp_dir": self.temp_dir,
                "model_path": self.model_path, "correction": self.report.get("correction"), "quality": self.quality,
                **self.extra}
