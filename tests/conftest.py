"""Shared test set-up: CPU only, a persistent compilation cache, and fixed seeds."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(os.path.dirname(__file__), "..", ".jax_cache"))

import jax  # noqa: E402

jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def pytest_collection_modifyitems(config, items):
    """Browser tests need Debian's chromium: .ci/run installs it and sets SAMPLAX_BROWSER=1."""
    import pytest

    if os.environ.get("SAMPLAX_BROWSER") == "1":
        return
    skip = pytest.mark.skip(reason="browser test: set SAMPLAX_BROWSER=1 with chromium installed (.ci/run does)")
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(skip)
