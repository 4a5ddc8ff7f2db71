"""One chain driver for every Markov method (`samplax.infer.run.ChainRunner`), and one program when nothing runs
between warm-up and sampling.

gibbs and block_gibbs run on the driver: a checkpointed run, and one interrupted and resumed, give a plain run's
draws bit for bit (transition t of a chain uses fold_in(chain_key, t) however the run is cut); ``thin=2`` keeps
transitions 1, 3, 5, ... of the thin=1 chain; the progress bar shows their stages. A plain nuts fit compiles warm-up
and sampling as one program and gives the same draws as a chunked run with a progress bar. Exact equalities, so no
Monte Carlo tolerance; the models are tiny so that each compiled program costs a few seconds.
"""

from __future__ import annotations

import json
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import samplax
from samplax.infer import run
from samplax.models.zoo import grid_networks as grid

DATA = grid.grid_network_data(seed=1, rows=2, cols=3, deterministic_fraction=0.0, num_evidence=1)
SETTINGS = dict(chains=2, warmup=6, draws=8, seed=4)


def _fit(method, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 8 draws earn convergence warnings
        return samplax.fit(grid.grid_network_model, DATA, method=method, **{**SETTINGS, "progress": False, **kwargs})


def _draws(result) -> dict:
    return {name: result.idata.posterior[name].values for name in result.idata.posterior.data_vars}


def _assert_same_draws(a, b):
    for name, values in _draws(a).items():
        np.testing.assert_array_equal(values, _draws(b)[name], err_msg=name)
    for name in ("lp", "acceptance_rate"):
        np.testing.assert_array_equal(a.idata.sample_stats[name].values, b.idata.sample_stats[name].values)


@pytest.fixture(scope="module", params=["gibbs", "block_gibbs"])
def plain(request):
    """The reference: a plain run (no checkpoint, no bar: warm-up and sampling in one program)."""
    return request.param, _fit(request.param)


def test_checkpoint_resume_and_progress_bar_keep_the_draws(plain, tmp_path, capsys, forget_last_chunk):
    """A checkpointed run in chunks of 4 under a progress bar, and the same run killed after its first chunk and
    resumed, equal the plain run bit for bit; the bar names the stages and the discrete sites reach the posterior."""
    method, reference = plain
    path = tmp_path / "ck"
    chunked = _fit(method, checkpoint=str(path), checkpoint_every=4, progress=True)
    _assert_same_draws(chunked, reference)
    latent = {grid.site_name(i, j) for i in range(2) for j in range(3) if DATA["evidence"][i, j] < 0}
    assert len(latent) == 5 and latent <= set(chunked.idata.posterior.data_vars)
    err = capsys.readouterr().err
    line = [text for text in err.splitlines() if text.startswith(f"{method}: 2 chains x 8 draws in")]
    assert line and all(stage in line[0] for stage in ("preparing", "warm-up", "sampling")), err

    forget_last_chunk(path)  # as if killed after the first chunk
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        resumed = samplax.resume(str(path), grid.grid_network_model, progress=False)
    _assert_same_draws(resumed, reference)


def test_thin_two_keeps_every_second_transition(plain):
    """thin=2 with 4 kept draws: half the draws, and draw j is transition 2j + 1 of the thin=1 run of 8 draws."""
    method, reference = plain
    thinned = _fit(method, thin=2, draws=4)
    for name, values in _draws(thinned).items():
        assert values.shape[:2] == (2, 4)
        np.testing.assert_array_equal(values, _draws(reference)[name][:, 1::2], err_msg=name)


def test_init_is_refused_for_the_gibbs_family():
    with pytest.raises(ValueError, match="'gibbs' does not use \\['init'\\].*prior draws"):
        samplax.fit(grid.grid_network_model, DATA, method="gibbs", init="median")


# ---------------------------------------------------------------------------------------------------------------------
# one program
def _normal_model(y):
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)


def test_a_plain_nuts_fit_is_one_program_with_the_draws_of_a_chunked_run(monkeypatch):
    """progress=False: warm-up and sampling compile as one program (this model is new to the in-process cache) and
    run in one dispatch; a run under a progress bar cut into 20 chunks (one chunk program reused) gives the same
    draws and statistics."""
    data = {"y": np.linspace(-1.0, 2.0, 5)}
    settings = dict(method="nuts", chains=2, warmup=30, draws=20, seed=2)
    calls, original = [], run.ChainRunner.run
    monkeypatch.setattr(run.ChainRunner, "run", lambda self, *args: calls.append(1) or original(self, *args))
    fused = samplax.fit(_normal_model, data, progress=False, **settings)
    assert fused.timing["programs_compiled"] == 1 and calls == []
    assert json.loads(fused.idata.attrs["extra_fused_warmup_sampling"]) is True
    assert fused.timing["warmup_s"] == 0.0 and fused.timing["sampling_s"] > 0
    monkeypatch.setattr(run, "PROGRESS_MIN_SECONDS", 0.0)  # a bar always gets its 20 chunks
    chunked = samplax.fit(_normal_model, data, progress=True, **settings)
    assert len(calls) == 20 and chunked.timing["programs_compiled"] == 2  # the warm-up and one chunk program
    np.testing.assert_array_equal(fused.idata.posterior["mu"].values, chunked.idata.posterior["mu"].values)
    for name in ("lp", "step_size", "n_steps", "diverging"):
        np.testing.assert_array_equal(fused.idata.sample_stats[name].values, chunked.idata.sample_stats[name].values)


def test_chain_runner_thinning_folds_keys_in_inside_the_scan():
    """With thin=3, transition t of chain c uses fold_in(key_c, t) (kept draw j is transition 3j + 2), computed inside
    the scan: a counting 'kernel' that returns its key's data shows exactly those keys, and map_chains is used."""
    mapped = []

    def map_chains(f):
        mapped.append(f)
        return jax.vmap(f)

    def build(data):
        step = lambda key, state, params: (state + 1, jax.random.key_data(key))  # noqa: E731
        record = lambda state, info: {"z": state[None].astype(jnp.float32), "key": info}  # noqa: E731
        return step, record, lambda z: {"posterior": {}, "log_likelihood": {}}

    runner = run.ChainRunner(build, chunk_size=4, thin=3, map_chains=map_chains)
    chain_keys = jax.random.split(jax.random.key(0), 2)
    runner.executable = runner.function.lower(
        None, jnp.zeros(2, jnp.int32), None, chain_keys, jnp.asarray(0, jnp.int32)
    ).compile()
    _, host = runner.run(None, jnp.zeros(2, jnp.int32), None, chain_keys, 1)  # kept draws 1..4
    expected = np.stack(
        [[jax.random.key_data(jax.random.fold_in(k, 3 * j + 2)) for j in range(1, 5)] for k in chain_keys]
    )
    np.testing.assert_array_equal(host["stats"]["key"], expected)
    assert mapped, "map_chains was not used"
