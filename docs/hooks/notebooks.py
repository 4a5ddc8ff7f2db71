"""MkDocs hook: the teaching notebooks (`notebooks/*.ipynb`, stored without outputs) rendered with their outputs.

Before MkDocs collects the pages, each notebook is made available as ``docs/notebooks/<name>.ipynb`` with its
outputs (that folder is git-ignored), and mkdocs-jupyter renders it (``execute: false`` in mkdocs.yml: this hook
owns the execution). A copy is reused when it was executed from the notebook's current source (SHA-256 recorded in
its metadata); otherwise the notebook is executed here. `tests/test_notebooks.py` writes the same copies (in one
shared kernel, its namespace emptied before each notebook, with the environment `execute` below sets), so running
the tests first (as CI does: ``make test`` then ``make docs``) means the docs build executes nothing, and
``make docs`` alone executes every notebook once. Both run the small sizes
(``SAMPLAX_NOTEBOOK_SMALL=1``, a few minutes for all of them on two cores): the docs show the same runs as the tests.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[2]
SOURCES = ROOT / "notebooks"
EXECUTED = ROOT / "docs" / "notebooks"
TIMEOUT_SECONDS = 500  # per cell


def source_hash(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def is_current(source: pathlib.Path) -> bool:
    """Whether ``docs/notebooks/<name>.ipynb`` holds the outputs of ``source`` as it is now."""
    import nbformat

    copy = EXECUTED / source.name
    if not copy.exists():
        return False
    try:
        recorded = nbformat.read(copy, as_version=4).metadata.get("samplax", {}).get("source_sha256")
    except (OSError, ValueError, AttributeError):  # a half-written or foreign file: execute again
        return False
    return recorded == source_hash(source)


def execute(source: pathlib.Path, workdir: str | os.PathLike | None = None):
    """Execute ``source`` top to bottom at small sizes; return the notebook with its outputs (not yet saved)."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(source, as_version=4)
    previous = {name: os.environ.get(name) for name in ("SAMPLAX_NOTEBOOK_SMALL", "JAX_PLATFORMS")}
    os.environ.update(SAMPLAX_NOTEBOOK_SMALL="1", JAX_PLATFORMS="cpu")  # the kernel inherits them
    try:
        with tempfile.TemporaryDirectory() as scratch:  # files a notebook writes (reports, fits) land here
            client = NotebookClient(
                notebook,
                timeout=TIMEOUT_SECONDS,
                kernel_name="python3",
                resources={"metadata": {"path": str(workdir or scratch)}},
            )
            client.execute()
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    notebook.metadata["samplax"] = {"source_sha256": source_hash(source), "small": True}
    return notebook


def save(notebook, name: str) -> pathlib.Path:
    """Write an executed notebook to ``docs/notebooks/<name>`` atomically (write, then rename)."""
    import nbformat

    EXECUTED.mkdir(parents=True, exist_ok=True)
    target = EXECUTED / name
    handle, temporary = tempfile.mkstemp(dir=EXECUTED, suffix=".tmp")
    with os.fdopen(handle, "w", encoding="utf-8") as stream:
        nbformat.write(notebook, stream)
    os.chmod(temporary, 0o644)  # mkstemp makes it private; the site is for everyone
    os.replace(temporary, target)
    return target


def on_pre_build(config, **kwargs):
    for source in sorted(SOURCES.glob("*.ipynb")):
        if not is_current(source):
            save(execute(source), source.name)
