"""Every teaching notebook executes top to bottom (small sizes via SAMPLAX_NOTEBOOK_SMALL=1), so none can rot.

Each executed notebook is also saved to the git-ignored ``docs/notebooks/`` (with the SHA-256 of its source), where
the docs build (`docs/hooks/notebooks.py`) finds it and renders it instead of executing the notebook a second time.

The notebooks run one after the other in one Jupyter kernel: starting a kernel and importing JAX, samplax, ArviZ and
matplotlib costs seconds per notebook on two cores. Before each notebook the kernel's namespace is emptied
(``%reset -f``, so a notebook that forgets an import or uses a name it never defines still fails), its working
directory moves to the test's own folder, and the warning filters and matplotlib settings return to the kernel's
start-up state; only imported modules and JAX's in-memory caches carry over.
"""

import importlib.util
import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
# also run by make test-py313 (Python 3.13, the newest ArviZ): the notebook that calls ArviZ's own plots
ARVIZ1_NOTEBOOKS = {"graph_hom"}
pytestmark = pytest.mark.slow  # every notebook runs top to bottom (make test runs them, make test-fast not)

# Run in the shared kernel before each notebook (a separate one-cell notebook: the notebook itself is not changed).
# The first run records the start-up warning filters and matplotlib settings; later runs restore them.
_FRESH_START = """
%reset -f
import os as _os, warnings as _warnings, matplotlib as _matplotlib, matplotlib.pyplot as _plt
_plt.close("all")
if not hasattr(_warnings, "_samplax_start"):
    _warnings._samplax_start = (list(_warnings.filters), dict(_matplotlib.rcParams))
_warnings.filters[:] = _warnings._samplax_start[0]
getattr(_warnings, "_filters_mutated", lambda: None)()  # warnings' caches see the restored list
_matplotlib.rcParams.update(_warnings._samplax_start[1])
_os.chdir({workdir!r})
del _os, _warnings, _matplotlib, _plt
"""


def _docs_hook():
    spec = importlib.util.spec_from_file_location("samplax_docs_notebooks", ROOT / "docs" / "hooks" / "notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    """One Jupyter kernel for every notebook, started with the environment the docs hook gives its kernels."""
    from jupyter_client.manager import AsyncKernelManager
    from nbclient.util import run_sync

    manager = AsyncKernelManager(kernel_name="python3")
    environment = {**os.environ, "SAMPLAX_NOTEBOOK_SMALL": "1", "JAX_PLATFORMS": "cpu"}  # kept by a restart too
    run_sync(manager.start_kernel)(cwd=str(tmp_path_factory.mktemp("kernel")), env=environment)
    yield manager
    run_sync(manager.shutdown_kernel)(now=True)


def _run_code(kernel, code):
    """``code`` run in ``kernel`` as a one-cell notebook; that notebook, with its outputs."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    return NotebookClient(notebook, km=kernel, timeout=60).execute()


def _fresh_start(kernel, workdir):
    from nbclient.util import run_sync

    if not run_sync(kernel.is_alive)():  # an earlier notebook killed it: the others still run
        run_sync(kernel.restart_kernel)(now=True)
    _run_code(kernel, _FRESH_START.format(workdir=str(workdir)))


def _execute(path, kernel, workdir):
    """``path`` executed top to bottom in ``kernel`` after a fresh start; the notebook with its outputs and the
    metadata `docs/hooks/notebooks.py` gives the copies it executes itself."""
    import nbformat
    from nbclient import NotebookClient

    hook = _docs_hook()
    _fresh_start(kernel, workdir)
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, km=kernel, timeout=hook.TIMEOUT_SECONDS, kernel_name="python3").execute()
    notebook.metadata["samplax"] = {"source_sha256": hook.source_hash(path), "small": True}
    return hook, notebook


def test_there_are_notebooks():
    assert any(path.name == "workflow.ipynb" for path in NOTEBOOKS)


def test_a_fresh_start_empties_the_namespace(kernel, tmp_path):
    """What a notebook defines is gone when the next one starts (it fails on a name it never defines), and the
    working directory and warning filters are the next notebook's own."""
    from nbclient.exceptions import CellExecutionError

    def state():
        code = "import os, warnings\nprint(os.getcwd(), len(warnings.filters), warnings.filters[0][0])"
        return _run_code(kernel, code).cells[0].outputs[0]["text"].split()

    (tmp_path / "first").mkdir()
    _fresh_start(kernel, tmp_path / "first")
    at_start = state()
    _run_code(kernel, "import warnings\nwarnings.simplefilter('ignore')\nleft_over = 1")
    _fresh_start(kernel, tmp_path)
    assert state() == [str(tmp_path)] + at_start[1:] and at_start[0] == str(tmp_path / "first")
    with pytest.raises(CellExecutionError, match="NameError"):
        _run_code(kernel, "left_over")


@pytest.mark.timeout(600)
@pytest.mark.parametrize(
    "path",
    [
        pytest.param(path, id=path.stem, marks=[pytest.mark.arviz1] if path.stem in ARVIZ1_NOTEBOOKS else [])
        for path in NOTEBOOKS
    ],
)
def test_notebook_executes(path, kernel, tmp_path):
    hook, notebook = _execute(path, kernel, tmp_path)
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
