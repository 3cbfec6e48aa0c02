"""The documentation builds in strict mode (warnings fail) and its generated pages follow the code."""
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _hook():
    spec = importlib.util.spec_from_file_location("gen_pages", ROOT / "docs" / "hooks" / "gen_pages.py")
    mod = importlib.util.module_from_spec(spec)
    pytest.importorskip("mkdocs")
    spec.loader.exec_module(mod)
    return mod


def test_cli_reference_lists_every_option_of_every_parser():
    from rastalign.cli import demo, fits, vhr

    page = _hook().cli_page()
    for parser in (vhr.build_parser(), fits.build_parser(), fits.build_simple_parser(), demo.build_parser()):
        for action in parser._actions:
            for opt in action.option_strings:
                if opt not in ("-h", "--help"):
                    assert f"`{opt}`" in page, opt
    assert "## `rastalign apply`" in page and "## `vhr-align-image-pair`" in page


def test_notebook_and_benchmark_pages_are_generated():
    hook = _hook()
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        text = hook.notebook_page(nb)
        assert "```python" in text and text.lstrip().startswith("!!! note")
    bench = hook.benchmarks_page()
    for f in (ROOT / "benchmarks" / "results").glob("*.json"):
        assert f"## `{f.stem}`" in bench


@pytest.mark.slow
def test_mkdocs_build_strict(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings_handlers.python")
    exe = shutil.which("mkdocs")
    cmd = [exe] if exe else [sys.executable, "-m", "mkdocs"]
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    run = subprocess.run(cmd + ["build", "--strict", "-f", str(ROOT / "mkdocs.yml"), "-d", str(tmp_path / "site")],
                         capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    site = tmp_path / "site"
    for page in ("index.html", "concepts/index.html", "accessor/index.html", "cli/index.html", "api/index.html",
                 "benchmarks/index.html", "notebooks/04_quality_inspection/index.html"):
        assert (site / page).is_file(), page
    api = (site / "api" / "index.html").read_text(encoding="utf-8")
    assert "warp_block" in api and "CoregAccessor" in api and "AlignmentModel" in api
