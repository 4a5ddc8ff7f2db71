"""Every teaching notebook executes top to bottom (small sizes via SAMPLAX_NOTEBOOK_SMALL=1), so none can rot."""

import os
import pathlib

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((pathlib.Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))
# also run by make test-py313 (Python 3.13, the newest ArviZ): the notebook that calls ArviZ's own plots
ARVIZ1_NOTEBOOKS = {"graph_hom"}


def test_there_are_notebooks():
    assert any(path.name == "workflow.ipynb" for path in NOTEBOOKS)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("path", [
    pytest.param(path, id=path.stem, marks=[pytest.mark.arviz1] if path.stem in ARVIZ1_NOTEBOOKS else [])
    for path in NOTEBOOKS])
def test_notebook_executes(path, tmp_path, monkeypatch):
    monkeypatch.setenv("SAMPLAX_NOTEBOOK_SMALL", "1")
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=500, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    errors = [output for cell in notebook.cells if cell.cell_type == "code"
              for output in cell.get("outputs", []) if output.get("output_type") == "error"]
    assert not errors, errors
