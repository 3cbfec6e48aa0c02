"""Start-up: importing the package, its pipelines and its commands loads none of the heavy libraries, and an
align-fits-simple run loads only what it uses (each case in a fresh interpreter: ``sys.modules`` is the evidence;
timings are in ``benchmarks/startup.py``)."""
import json
import subprocess
import sys

import pytest

from rastalign.testing.stars import write_star_pair

pytestmark = pytest.mark.slow  # subprocesses, clusters or notebook kernels: outside the inner loop

HEAVY = ("numba", "scipy", "dask", "distributed", "astropy", "rasterio", "xarray", "pandas", "pyproj", "sep",
         "matplotlib", "llvmlite")
REPORT = f"import json, sys; print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))))"


def _loaded(code, cwd=None):
    """The heavy top-level packages in ``sys.modules`` after running ``code`` in a fresh interpreter."""
    r = subprocess.run([sys.executable, "-c", f"import sys\n{code}\n{REPORT}"], capture_output=True, text=True, cwd=cwd)
    assert r.returncode == 0, r.stderr
    return set(json.loads(r.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("module", ["rastalign", "rastalign.cli.fits", "rastalign.cli.vhr", "rastalign.cli.demo",
                                    "rastalign.cli.stack"])
def test_the_package_and_its_commands_import_nothing_heavy(module):
    assert _loaded(f"import {module}\nassert 'numpy' not in sys.modules") == set()


@pytest.mark.parametrize("module", ["rastalign.pipelines.pair", "rastalign.pipelines.fits_pair", "rastalign.spalipy",
                                    "rastalign.warp.graph", "rastalign.model"])
def test_the_pipelines_import_numpy_only(module):
    assert _loaded(f"import {module}") == set()


@pytest.mark.parametrize("cli, argv", [("fits", "main"), ("fits", "main_simple"), ("vhr", "main"), ("demo", "main")])
def test_help_loads_nothing_heavy(cli, argv):
    code = (f"from rastalign.cli.{cli} import {argv}\ntry:\n    {argv}(['--help'])\nexcept SystemExit as e:\n"
            f"    assert e.code == 0\nassert 'numpy' not in sys.modules")
    assert _loaded(code) == set()


def test_a_public_name_still_resolves_on_first_use():
    assert _loaded("import rastalign as a, rastalign.model as m\nm.AlignmentModel, a.Spalipy, a.align_fits\n"
                   "import rastalign\nrastalign.estimate") <= {"scipy", "sep"}


def test_planning_a_fits_warp_loads_neither_the_kernels_nor_dask_array(tmp_path):
    code = ("import numpy as np\nfrom rastalign.io.sources import FitsSource\nfrom rastalign.model.model import "
            "AlignmentModel\nfrom rastalign.params import WarpParams\nfrom rastalign.warp.graph import warp_graph\n"
            "m = AlignmentModel(np.array([[1.0, 0.01, 2.5], [-0.01, 1.0, -1.5]]))\n"
            "g = warp_graph(FitsSource('x.fits', 0, (600, 500)), m, (600, 500), WarpParams(resampling='bspline', "
            "chunks=(256, 256)), 'float32', np.nan)\nassert g.numblocks == (1, 3, 2) and len(g.to_delayed().ravel()) == 6")
    assert _loaded(code, cwd=tmp_path) == {"dask"}


def test_align_fits_simple_runs_without_dask_array_astropy_table_distributed_or_xarray(tmp_path):
    src, tmpl, _ = write_star_pair(tmp_path, (256, 256), 150, rotation_deg=1.0, shift=(3.5, -2.25), seed=4)
    code = (f"from rastalign.cli.fits import main_simple\nassert main_simple([{str(src)!r}, 'out.fits', "
            f"{str(tmpl)!r}]) == 0")
    loaded = _loaded(code, cwd=tmp_path)
    assert (tmp_path / "out.fits").exists()
    assert loaded.isdisjoint({"distributed", "xarray", "pandas", "rasterio", "pyproj", "matplotlib", "numba",
                              "llvmlite"}), loaded
    assert {"dask", "astropy", "sep", "scipy"} <= loaded  # what the run does need
    # detections are structured arrays: astropy.table (a fifth of a second) is loaded only for given catalogues
    dask_array = _loaded(code.replace("'out.fits'", "'out2.fits'") + "\nassert 'dask.array' not in sys.modules"
                         "\nassert 'astropy.table' not in sys.modules", cwd=tmp_path)
    assert dask_array == loaded


def test_spalipy_warps_an_array_without_dask_array():
    code = ("from rastalign.testing.stars import make_star_pair\nfrom rastalign import Spalipy\n"
            "p = make_star_pair((256, 256), n_stars=150, rotation_deg=1.0, shift=(3.5, -2.25), seed=4)\n"
            "s = Spalipy(p.source, template_data=p.template)\ns.align()\nassert s.aligned_data.shape == (256, 256)\n"
            "assert 'dask.array' not in sys.modules and 'distributed' not in sys.modules")
    assert "dask" in _loaded(code)


def test_a_raster_estimation_loads_neither_scipy_nor_distributed(tmp_path):
    # scipy's first import costs about 0.3 s and distributed's 0.13 s: a fifth of an 8192^2 estimation
    from rastalign.testing.pairs import write_pair

    moving, fixed, _ = write_pair(tmp_path, (512, 512), rotation_deg=0.2, shift=(2.5, -1.5), distortion_px=1.0)
    code = f"import rastalign\nassert rastalign.estimate({str(moving)!r}, {str(fixed)!r}).quality['passed']"
    loaded = _loaded(code)
    assert {"dask", "rasterio"} <= loaded and loaded.isdisjoint({"scipy", "distributed"}), loaded
