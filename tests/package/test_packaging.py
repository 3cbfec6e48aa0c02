"""environment.yml (conda-forge) stays consistent with pyproject.toml."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# PyPI name -> conda-forge name, where they differ (extras become separate packages there)
CONDA_NAME = {"mkdocstrings": "mkdocstrings-python"}
IMPLIED = {"dask[distributed]": ["dask", "distributed"]}


def _pyproject():
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _environment():
    yaml = pytest.importorskip("yaml")
    env = yaml.safe_load((ROOT / "environment.yml").read_text(encoding="utf-8"))
    specs = {}
    for dep in env["dependencies"]:
        if isinstance(dep, str):
            m = re.match(r"^([A-Za-z0-9_.\-]+)\s*(.*)$", dep)
            specs[m.group(1).lower()] = m.group(2).strip()
    return env, specs


def _requirements(lines):
    from packaging.requirements import Requirement

    out = []
    for line in lines:
        r = Requirement(line)
        names = IMPLIED.get(f"{r.name}[{','.join(sorted(r.extras))}]" if r.extras else r.name)
        mins = [s.version for s in r.specifier if s.operator == ">="]
        for name in names or [CONDA_NAME.get(r.name.lower(), r.name.lower())]:
            out.append((name, mins[0] if mins else None))
    return out


def test_every_core_dependency_is_in_environment_yml_with_the_same_minimum():
    env, specs = _environment()
    assert "conda-forge" in env["channels"]
    for name, minimum in _requirements(_pyproject()["project"]["dependencies"]):
        assert name in specs, f"{name} (pyproject core dependency) missing from environment.yml"
        if minimum is not None:
            assert specs[name] == f">={minimum}", f"{name}: environment.yml {specs[name]!r} vs pyproject >={minimum}"


def test_test_extra_is_in_environment_yml():
    _, specs = _environment()
    for name, _ in _requirements(_pyproject()["project"]["optional-dependencies"]["test"]):
        assert name in specs, f"{name} (pyproject test extra) missing from environment.yml"


def test_the_build_requirements_and_a_c_compiler_are_in_environment_yml():
    """A conda user's "-e ." compiles the kernels: the build backend, Cython and a C compiler come from the
    environment, at the minimums pyproject's [build-system] asks for."""
    _, specs = _environment()
    assert "c-compiler" in specs
    for name, minimum in _requirements(_pyproject()["build-system"]["requires"]):
        assert name in specs, f"{name} (pyproject build requirement) missing from environment.yml"
        if minimum is not None:
            assert specs[name] == f">={minimum}", f"{name}: environment.yml {specs[name]!r} vs pyproject >={minimum}"


def test_python_floor_matches():
    _, specs = _environment()
    floor = _pyproject()["project"]["requires-python"]
    assert specs["python"] == floor.replace(" ", "")


def test_environment_installs_the_package_itself():
    env, _ = _environment()
    pip = [d for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert pip and "-e ." in pip[0]["pip"]


@pytest.mark.slow
@pytest.mark.parametrize("order", ["rastalign, xarray", "xarray, rastalign"])
def test_accessor_is_registered_whatever_the_import_order(order):
    import subprocess
    import sys

    code = (f"import {order}, numpy\n"
            "import xarray\n"
            "a = xarray.DataArray(numpy.zeros((2, 2)), dims=('y', 'x'))\n"
            "print(type(a.coreg).__name__)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "CoregAccessor"


@pytest.mark.slow
def test_fits_command_line_does_not_import_the_raster_stack():
    import subprocess
    import sys

    code = ("import sys, rastalign.cli.fits, rastalign.spalipy\n"
            "print(sorted(m for m in ('xarray', 'rasterio', 'dask', 'pandas', 'pyproj') if m in sys.modules))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "[]"


@pytest.mark.slow
def test_the_layers_contract_holds():
    """Every module imports only from the layers below its own (pyproject's [tool.importlinter])."""
    import shutil
    import subprocess

    exe = shutil.which("lint-imports")
    if exe is None:
        pytest.skip("import-linter is not installed (it is in the test extra)")
    run = subprocess.run([exe], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:]
