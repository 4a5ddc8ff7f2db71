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
