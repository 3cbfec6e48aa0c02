"""rastalign: align a moving raster onto a reference, for scenes of any size, in memory or on Dask.

Conventions: a model maps an **output pixel to a moving pixel** (a pull map), in
``(x, y)`` order, with pixel centres at integer coordinates (0-based).

Every public name is imported on first use, so a command line that needs only the FITS
path never pays for xarray, rasterio or dask. The xarray accessor ``coreg`` is
registered as soon as both rastalign and xarray are imported, in either order.
"""
import importlib
import importlib.util
import sys

__version__ = "0.1.0"

from rastalign.errors import AlignmentError, InputError, OutputError, OverlapError, QualityError, RastalignError  # noqa: E402

_LAZY = {"AlignmentModel": "model.model", "AlignmentResult": "pipelines.result", "Estimate": "pipelines.pair",
         "align_image_pair": "pipelines.pair", "apply": "pipelines.apply", "estimate": "pipelines.pair",
         "align_stack": "pipelines.stack", "StackResult": "pipelines.stack", "open_fits": "io.fits",
         "Spalipy": "spalipy.aligner", "align_fits": "pipelines.fits_pair", "estimate_fits": "pipelines.fits_pair",
         "load_model": "io.models", "save_model": "sinks.models"}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'rastalign' has no attribute {name!r}")


class _AfterImport:
    """A meta-path finder that runs ``callback`` right after module ``name`` is executed."""

    def __init__(self, name, callback):
        self.name, self.callback = name, callback

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        load, callback = spec.loader.exec_module, self.callback

        def exec_module(module):
            load(module)
            callback()

        spec.loader.exec_module = exec_module
        return spec


def _register_accessor():
    importlib.import_module("rastalign.xarray")


if "xarray" in sys.modules:
    _register_accessor()
else:
    sys.meta_path.insert(0, _AfterImport("xarray", _register_accessor))

__all__ = ["AlignmentError", "AlignmentModel", "AlignmentResult", "Estimate", "InputError", "OutputError",
           "OverlapError", "QualityError", "RastalignError", "StackResult", "__version__", "align_image_pair", "align_stack",
           "apply", "estimate", "load_model", "save_model",
           "open_fits", "Spalipy", "align_fits", "estimate_fits"]
