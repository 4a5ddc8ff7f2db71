"""Programs that stalled samplax: XLA:CPU waited forever at 0 % CPU on batched Cholesky models.

jaxlib 0.10.2's batched LAPACK kernels block their intra-op worker while their tasks wait in the same pool
(docs/reliability.md, "A deadlock in batched linear algebra"). samplax gives XLA one intra-op thread on machines with
few cores (``samplax._one_intra_op_thread_on_small_machines``) and cmcd evaluates its training loss in groups of
`samplax.kernels.cmcd.LOSS_GROUP`. pytest-timeout and subprocess timeouts turn a return of the stall into a failure.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import samplax

from .corpus import CORPUS


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_cmcd_trains_on_numpyros_sparse_regression():
    entry = CORPUS["sparse_regression"]
    fit = samplax.fit(entry.model, entry.data(), method="cmcd", chains=2, warmup=2, draws=10, seed=0, progress=False)
    for name in ("sigma", "lambda", "msq"):
        values = fit.idata.posterior[name].values
        assert values.shape[:2] == (2, 10) and np.all(np.isfinite(values)) and np.all(values > 0), name


REPRODUCER = os.path.join(os.path.dirname(__file__), "lapack_pool_deadlock.py")


def _run_reproducer_after_importing_samplax(extra_env: dict) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PJRT_NPROC", "NPROC")} | extra_env
    code = f"import os, runpy, samplax; print(os.environ.get('PJRT_NPROC')); runpy.run_path({REPRODUCER!r}, run_name='__main__')"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.timeout(150)
def test_importing_samplax_prevents_the_lapack_pool_deadlock_on_small_machines():
    # The reproducer deadlocks with a 2-thread pool (checked by hand: it never returns); after `import samplax` on a
    # machine of at most SMALL_MACHINE_CORES cores the pool has one thread and it finishes in seconds.
    cores = len(os.sched_getaffinity(0))
    done = _run_reproducer_after_importing_samplax({})
    assert done.returncode == 0, done.stderr[-2000:]
    pool, value = done.stdout.split()
    assert pool == ("1" if cores <= samplax.SMALL_MACHINE_CORES else "None")
    assert np.isfinite(float(value))


@pytest.mark.timeout(150)
def test_a_pool_size_the_user_chose_is_kept():
    done = _run_reproducer_after_importing_samplax({"PJRT_NPROC": "8"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[0] == "8"
