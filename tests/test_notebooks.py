"""Every teaching notebook executes top to bottom (small sizes via SAMPLAX_NOTEBOOK_SMALL=1), so none can rot.

Each executed notebook is also saved to the git-ignored ``docs/notebooks/`` (with the SHA-256 of its source), where
the docs build (`docs/hooks/notebooks.py`) finds it and renders it instead of executing the notebook a second time.
"""

import importlib.util
import pathlib

import pytest

ROOT = pathlib.Path(__file__).parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
# also run by make test-py313 (Python 3.13, the newest ArviZ): the notebook that calls ArviZ's own plots
ARVIZ1_NOTEBOOKS = {"graph_hom"}
pytestmark = pytest.mark.slow  # every notebook runs top to bottom (make test runs them, make test-fast not)


def _docs_hook():
    spec = importlib.util.spec_from_file_location("samplax_docs_notebooks", ROOT / "docs" / "hooks" / "notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_there_are_notebooks():
    assert any(path.name == "workflow.ipynb" for path in NOTEBOOKS)


@pytest.mark.timeout(600)
@pytest.mark.parametrize(
    "path",
    [
        pytest.param(path, id=path.stem, marks=[pytest.mark.arviz1] if path.stem in ARVIZ1_NOTEBOOKS else [])
        for path in NOTEBOOKS
    ],
)
def test_notebook_executes(path, tmp_path):
    hook = _docs_hook()
    notebook = hook.execute(path, tmp_path)
    errors = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
    ]
    assert not errors, errors
    hook.save(notebook, path.name)  # for the docs build: rendered with these outputs, not executed again
    assert hook.is_current(path)
