"""Every notebook in notebooks/ runs top to bottom (real execution with nbclient) and is stored without outputs."""
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # subprocesses, clusters or notebook kernels: outside the inner loop

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))
nbformat = pytest.importorskip("nbformat")


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 4


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_stored_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name} has stored outputs"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes(path, tmp_path, monkeypatch):
    """Runs top to bottom and removes its working folder (nothing is left in the temp folder)."""
    from nbclient import NotebookClient

    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the kernel inherits it: tempfile.mkdtemp() lands here
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("rastalign_")], list(tmp_path.iterdir())
