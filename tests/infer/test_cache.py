"""JAX's persistent compilation cache is on by default: a second process reuses what the first compiled."""

import os
import subprocess
import sys

import pytest

SCRIPT = """
import numpy as np, numpyro, numpyro.distributions as dist, samplax, jax
from samplax.infer import cache

def model(y=None):
    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    with numpyro.plate("obs", 5):
        numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)

samplax.fit(model, {"y": np.arange(5.0)}, method="mala", chains=2, warmup=20, draws=20, progress=False)
print("CACHE", cache.cache_dir())
"""


def run(env):
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def files(path):
    return sorted(os.path.relpath(os.path.join(root, name), path) for root, _, names in os.walk(path) for name in names)


@pytest.mark.slow  # two fresh processes
def test_cache_is_written_by_one_process_and_reused_by_the_next(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    env.update(SAMPLAX_COMPILATION_CACHE_DIR=str(tmp_path / "cache"), JAX_PLATFORMS="cpu")
    assert f"CACHE {tmp_path / 'cache'}" in run(env)
    first = files(tmp_path / "cache")
    assert first, "the first process wrote no compiled program"
    run(env)
    assert files(tmp_path / "cache") == first  # every program came from the cache: nothing new was written


def test_user_configuration_wins_and_the_cache_can_be_turned_off(tmp_path, monkeypatch):
    import jax

    from samplax.infer import cache

    before = jax.config.jax_compilation_cache_dir
    monkeypatch.setenv("SAMPLAX_COMPILATION_CACHE_DIR", str(tmp_path / "samplax"))
    try:
        jax.config.update("jax_compilation_cache_dir", str(tmp_path / "mine"))
        assert cache.configure() == str(tmp_path / "mine")  # a cache the user set up is left alone
        jax.config.update("jax_compilation_cache_dir", None)
        monkeypatch.setenv("SAMPLAX_COMPILATION_CACHE", "off")
        assert cache.configure() is None and not (tmp_path / "samplax").exists()
        monkeypatch.delenv("SAMPLAX_COMPILATION_CACHE")
        assert cache.configure() == str(tmp_path / "samplax") and (tmp_path / "samplax").is_dir()
    finally:
        jax.config.update("jax_compilation_cache_dir", before)
