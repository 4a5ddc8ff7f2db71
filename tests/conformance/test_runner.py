"""The conformance runner's guard against cells that never return (``make conformance``).

A cell with no result after ``cell_timeout`` seconds is recorded as an error and a new worker process takes the
model's remaining methods: a stuck XLA program blocks every later program of its process, so the runner cannot
carry on in the same one.
"""

from __future__ import annotations

from .corpus import entries
from .run import run_matrix_part


def test_a_cell_without_result_is_an_error_and_the_next_cell_gets_a_new_worker():
    entry = entries("quick")[0]
    logged = []
    cells = run_matrix_part(
        [entry], ["nuts", "mala"], {}, dict(chains=1, warmup=5, draws=5), logged.append, cell_timeout=0.2
    )
    assert set(cells) == {(entry.name, "nuts"), (entry.name, "mala")}
    for cell in cells.values():
        assert cell["status"] == "error"
        assert cell["message"] == "no result within 0.2 s (the process was stopped)"
    assert len(logged) == 2 and all("no result within" in line for line in logged)


def test_two_jobs_run_two_models_at_once():
    first, second = entries("quick")[:2]
    logged = []
    cells = run_matrix_part(
        [first, second], ["nuts"], {}, dict(chains=1, warmup=5, draws=5), logged.append, cell_timeout=0.2, jobs=2
    )
    assert set(cells) == {(first.name, "nuts"), (second.name, "nuts")}
    assert all(cell["status"] == "error" for cell in cells.values()) and len(logged) == 2


def test_a_saved_run_resumes_where_it_stopped(tmp_path):
    import math

    import numpy as np
    import pytest

    from .compare import Comparison
    from .run import load_state, save_state

    entry = entries("quick")[0]
    settings = dict(chains=1, warmup=5, draws=5)
    comparison = Comparison(1.5, "mu", math.inf, "sigma", 0.2, 2, False, [["mu", 0.0, 0.1, 0.01, 0.02, 1.0, 1.0]])
    row = {"name": entry.name, "entry": entry, "status": "fail", "comparison": comparison, "sites": ["mu"]}
    references = {entry.name: ({"mu": np.arange(6.0).reshape(2, 3)}, ["mu"])}
    cells = {(entry.name, "nuts"): {"status": "ok", "worst": 0.1, "bias_z": 0.0, "seconds": 1.0}}
    save_state(tmp_path, settings, [row], references, cells, elapsed=12.0)

    rows, loaded_references, loaded_cells, elapsed = load_state(tmp_path, settings)
    assert elapsed == 12.0 and loaded_cells == cells
    assert rows[0]["entry"] is entry and rows[0]["comparison"] == comparison
    np.testing.assert_array_equal(loaded_references[entry.name][0]["mu"], references[entry.name][0]["mu"])
    with pytest.raises(SystemExit, match="other|not"):
        load_state(tmp_path, dict(settings, draws=6))

    # the matrix runs only the cells that are missing: here mala (stopped after 0.2 s), not nuts
    logged = []
    run_matrix_part([entry], ["nuts", "mala"], {}, settings, logged.append, cells=loaded_cells, cell_timeout=0.2)
    assert loaded_cells[(entry.name, "nuts")]["status"] == "ok"
    assert loaded_cells[(entry.name, "mala")]["status"] == "error" and len(logged) == 1
