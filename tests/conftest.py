"""Shared test set-up: CPU only, a persistent compilation cache, and fixed seeds."""

import json
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(os.path.dirname(__file__), "..", ".jax_cache"))

import jax  # noqa: E402
import pytest  # noqa: E402

import samplax  # noqa: E402, F401  (before any JAX computation: it sizes XLA's CPU thread pool)

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


@pytest.fixture
def forget_last_chunk():
    """``forget_last_chunk(path)``: make a finished two-chunk checkpoint look killed after its first chunk."""

    def forget(path) -> None:
        manifest_path = os.path.join(path, "manifest.json")
        with open(manifest_path) as handle:
            manifest = json.load(handle)
        assert manifest["num_chunks"] == 2 and manifest["completed_chunks"] == 2
        manifest["completed_chunks"] = 1
        del manifest["files"]["chunk_00001.npz"]
        os.remove(os.path.join(path, "chunk_00001.npz"))
        with open(manifest_path, "w") as handle:
            json.dump(manifest, handle)

    return forget
