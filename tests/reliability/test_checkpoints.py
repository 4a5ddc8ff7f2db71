"""Checkpoints and output files under hostile or unlucky conditions (issue 14, items 1-4).

Every case of docs/reliability.md's checkpoint table is reproduced here: crafted manifests run no code, a checkpoint
is bound to its model, data and settings, folders that are not samplax checkpoints are never written to, no draw is
dropped whatever ``draws % checkpoint_every``, tampered files are refused by name, and output paths are checked before
any work. Fits are tiny (MALA, 2 chains, 20 warm-up steps, 10 draws) on one zoo model, so the compiled programs are
shared; MALA because its programs compile several times faster than NUTS's, and chunking is the same for every method.
"""

import copy
import io
import json
import os
import shutil
import tempfile

import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import samplax
from samplax import cli
from samplax.infer import checkpoint
from samplax.models import zoo

pytestmark = pytest.mark.filterwarnings("ignore::samplax.infer.fit.ConvergenceWarning")

ENTRY = zoo.get("gamma_poisson")
DATA = ENTRY.make_data()
DRAWS = 10


def _fit(**kwargs):
    options = dict(method="mala", chains=2, warmup=20, draws=DRAWS, seed=0, progress=False)
    options.update(kwargs)
    return samplax.fit(ENTRY.model, DATA, **options)


def _lam(result):
    return result.idata.posterior["lam"].values


def other_model(y=None, shape=2.0, rate=1.0, num_observations=None):
    """Another model with gamma_poisson's sites, shapes and distributions: only its prior differs."""
    lam = numpyro.sample("lam", dist.Gamma(2.0 * shape, rate))
    with numpyro.plate("observations", len(y)):
        numpyro.sample("y", dist.Poisson(lam), obs=y)


@pytest.fixture(scope="module")
def whole():
    """The uninterrupted run: one chunk, no checkpoint."""
    return _fit()


@pytest.fixture(scope="module")
def finished(tmp_path_factory, whole):
    """A finished checkpoint of 4 chunks (3 + 3 + 3 + 1 draws), copied by the tests that damage it."""
    path = tmp_path_factory.mktemp("finished") / "ck"
    result = _fit(checkpoint=str(path), checkpoint_every=3)
    np.testing.assert_array_equal(_lam(result), _lam(whole))
    return path


@pytest.fixture
def copy_of(finished, tmp_path):
    path = tmp_path / "ck"
    shutil.copytree(finished, path)
    return path


def _manifest(path):
    return json.loads((path / "manifest.json").read_text())


def _write_manifest(path, manifest, rehash=True):
    """Write a manifest as a forger would (rehash=True recomputes settings_sha256, as anyone can)."""
    if rehash:
        manifest["settings_sha256"] = checkpoint.settings_digest(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest))


def _npz(arrays):
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------------------------------
# 1. no code from files
def test_crafted_manifest_runs_no_code(copy_of, tmp_path, capsys):
    """model_ref "os:system" and a command in data.npz (hashes forged to match): refused, the command never runs."""
    pwned = tmp_path / "pwned"
    payload = _npz({"command": np.array(f"touch {pwned}")})
    (copy_of / "data.npz").write_bytes(payload)
    manifest = _manifest(copy_of)
    manifest["model_ref"] = "os:system"
    manifest["files"]["data.npz"] = checkpoint._hex(payload)
    _write_manifest(copy_of, manifest)
    with pytest.raises(ValueError, match="model_ref"):
        samplax.resume(str(copy_of), progress=False)
    with pytest.raises(ValueError, match="model_ref"):
        samplax.resume(str(copy_of), model=ENTRY.model, progress=False)
    assert cli.main(["resume", str(copy_of), "--out", str(tmp_path / "f.nc"), "--quiet"]) == 2
    assert "model_ref" in capsys.readouterr().err
    assert not pwned.exists()


def test_resume_without_model_needs_a_zoo_model(copy_of):
    """A checkpoint of a user model (model_ref null) asks for model=; nothing is imported."""
    manifest = _manifest(copy_of)
    manifest["model_ref"] = None
    _write_manifest(copy_of, manifest)
    with pytest.raises(ValueError, match=r"pass the model: samplax.resume\(path, model="):
        samplax.resume(str(copy_of), progress=False)


def test_only_zoo_names_are_recorded(finished):
    assert _manifest(finished)["model_ref"] == "zoo:gamma_poisson"
    assert samplax.infer.fit._model_reference(other_model) is None


# ---------------------------------------------------------------------------------------------------------------------
# 2. checkpoints bound to what made them
def test_other_model_into_finished_checkpoint_is_refused(finished, tmp_path):
    """Same site names, shapes and distributions, another prior: the model fingerprint (code hash) tells them apart."""
    before = {p.name: p.read_bytes() for p in finished.iterdir()}
    with pytest.raises(ValueError, match="model_fingerprint.*code"):
        samplax.fit(
            other_model,
            DATA,
            method="mala",
            chains=2,
            warmup=20,
            draws=DRAWS,
            seed=0,
            progress=False,
            checkpoint=str(finished),
            checkpoint_every=3,
        )
    with pytest.raises(ValueError, match="model_fingerprint"):
        samplax.resume(str(finished), model=other_model, progress=False)
    model_file = tmp_path / "other.py"
    model_file.write_text(
        "import numpyro\nimport numpyro.distributions as dist\n\n\n"
        "def model(y=None, shape=2.0, rate=1.0, num_observations=None):\n"
        "    lam = numpyro.sample('lam', dist.Gamma(3.0, rate))\n"
        "    with numpyro.plate('observations', len(y)):\n"
        "        numpyro.sample('y', dist.Poisson(lam), obs=y)\n"
    )
    assert (
        cli.main(
            ["resume", str(finished), "--model", f"{model_file}:model", "--out", str(tmp_path / "f.nc"), "--quiet"]
        )
        == 2
    )
    assert {p.name: p.read_bytes() for p in finished.iterdir()} == before


def test_other_data_or_settings_are_refused(finished):
    other = ENTRY.make_data(seed=11)
    with pytest.raises(ValueError, match="data_fingerprint"):
        samplax.resume(str(finished), data=other, progress=False)
    with pytest.raises(ValueError, match="'options'"):
        _fit(checkpoint=str(finished), checkpoint_every=3, target_accept=0.7)
    with pytest.raises(ValueError, match="'chunk_size'"):
        _fit(checkpoint=str(finished), checkpoint_every=4)


def test_resume_with_model_by_name_and_by_function(finished, whole, tmp_path):
    np.testing.assert_array_equal(
        _lam(samplax.resume(str(finished), model="gamma_poisson", progress=False)), _lam(whole)
    )
    np.testing.assert_array_equal(_lam(samplax.resume(str(finished), model=ENTRY.model, progress=False)), _lam(whole))
    out = tmp_path / "fit.nc"
    assert cli.main(["resume", str(finished), "--model", "gamma_poisson", "--out", str(out), "--quiet"]) == 0
    np.testing.assert_array_equal(_lam(samplax.load(str(out))), _lam(whole))


def test_tampered_chunk_is_refused(copy_of):
    """A chunk overwritten with 1e6 (manifest untouched): refused, naming the file."""
    name = "chunk_00001.npz"
    with np.load(copy_of / name) as archive:
        arrays = {key: archive[key] for key in archive.files}
    arrays["posterior/lam"] = np.full_like(arrays["posterior/lam"], 1e6)
    (copy_of / name).write_bytes(_npz(arrays))
    with pytest.raises(ValueError, match=name):
        samplax.resume(str(copy_of), progress=False)
    with pytest.raises(ValueError, match=name):
        _fit(checkpoint=str(copy_of), checkpoint_every=3)


@pytest.mark.parametrize("name", ["data.npz", "warmup.npz"])
def test_tampered_data_or_warmup_is_refused(copy_of, name):
    manifest = _manifest(copy_of)
    manifest["completed_chunks"] = 0  # the warm-up file is read only when no chunk is
    _write_manifest(copy_of, manifest)
    (copy_of / name).write_bytes((copy_of / name).read_bytes()[:-7] + b"garbage")
    with pytest.raises(ValueError, match=name):
        samplax.resume(str(copy_of), progress=False)


@pytest.mark.parametrize(
    "changes, rehash, match",
    [
        ({"seed": 1}, False, "settings_sha256"),  # edited by hand
        ({"seed": 1}, True, "key_data"),  # digest forged too: the key no longer matches
        ({"chunk_size": 5}, False, "num_chunks"),
        ({"chunk_size": 5, "num_chunks": 2, "completed_chunks": 2}, False, "settings_sha256"),
        ({"chunk_size": 5, "num_chunks": 2, "completed_chunks": 2}, True, "chunk_00000.npz.*expected 5 draws"),
        ({"completed_chunks": -1}, True, "completed_chunks"),
        ({"completed_chunks": 5}, True, "completed_chunks"),
        ({"completed_chunks": True}, True, "completed_chunks"),
        ({"draws": 20}, True, "num_chunks"),
        ({"format_version": 1}, True, "format version"),
        ({"model_ref": "samplax.cli:main"}, True, "model_ref"),
    ],
)
def test_edited_manifest_is_refused(copy_of, changes, rehash, match):
    manifest = _manifest(copy_of)
    manifest.update(changes)
    _write_manifest(copy_of, manifest, rehash=rehash)
    with pytest.raises(ValueError, match=match):
        samplax.resume(str(copy_of), progress=False)


@pytest.mark.parametrize("content", [b"{not json", b"", b"\xff\xfe", b"[1, 2]", b'{"format_version": 2}'])
def test_garbage_manifest_names_the_file(copy_of, content):
    (copy_of / "manifest.json").write_bytes(content)
    with pytest.raises(ValueError, match="manifest.json"):
        samplax.resume(str(copy_of), progress=False)


def test_old_checkpoint_is_refused_with_how_to_rerun(copy_of):
    """A version-1 checkpoint (no marker file): refused, saying how to start again."""
    os.remove(copy_of / checkpoint.MARKER)
    manifest = _manifest(copy_of)
    manifest["format_version"] = 1
    _write_manifest(copy_of, manifest)
    for attempt in (
        lambda: samplax.resume(str(copy_of), progress=False),
        lambda: _fit(checkpoint=str(copy_of), checkpoint_every=3),
    ):
        with pytest.raises(ValueError, match="older samplax.*Rerun the fit with checkpoint= a new or empty"):
            attempt()


def test_manifest_of_a_real_checkpoint_is_valid(finished):
    manifest = _manifest(finished)
    assert checkpoint.validate_manifest(copy.deepcopy(manifest)) == manifest
    assert set(manifest["files"]) == {"data.npz", "warmup.npz"} | {f"chunk_{i:05d}.npz" for i in range(4)}
    assert json.loads((finished / checkpoint.MARKER).read_text()) == {
        "format_version": checkpoint.CHECKPOINT_FORMAT_VERSION
    }


# ---------------------------------------------------------------------------------------------------------------------
# 3. never touch what isn't ours
@pytest.mark.parametrize("name", ["data.npz", "manifest.json", "notes.txt"])
def test_folder_with_user_files_is_refused_and_untouched(tmp_path, name):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / name).write_bytes(b"the user's own file")
    with pytest.raises(ValueError, match="not a samplax checkpoint"):
        _fit(checkpoint=str(folder), checkpoint_every=3)
    with pytest.raises(ValueError, match="not a samplax checkpoint"):
        samplax.resume(str(folder), progress=False)
    assert os.listdir(folder) == [name]
    assert (folder / name).read_bytes() == b"the user's own file"


def test_checkpoint_path_that_is_a_file_is_refused(tmp_path):
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        _fit(checkpoint=str(path), checkpoint_every=3)
    assert path.read_text() == "x"


def test_cli_out_in_missing_folder_fails_before_fitting(tmp_path, monkeypatch, capsys):
    """--out or --report in a missing folder: exit 2 before anything is fitted."""
    import samplax.infer.fit as fit_module

    def no_fit(*args, **kwargs):
        raise AssertionError("fit() ran although the output path cannot be written")

    monkeypatch.setattr(fit_module, "fit", no_fit)
    monkeypatch.setattr(fit_module, "resume", no_fit)
    missing = tmp_path / "missing" / "dir"
    for extra in (
        ["--out", str(missing / "f.nc")],
        ["--out", str(tmp_path / "f.nc"), "--report", str(missing / "r.html")],
        ["--out", str(tmp_path)],
    ):
        assert cli.main(["fit", "gamma_poisson", "--quiet", *extra]) == 2
        assert "--" in capsys.readouterr().err
    assert cli.main(["resume", str(tmp_path), "--out", str(missing / "f.nc"), "--quiet"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_save_checks_the_path_and_load_refuses_other_files(whole, tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        whole.save(str(tmp_path / "missing" / "f.nc"))
    with pytest.raises(ValueError, match="is a directory"):
        whole.save(str(tmp_path))
    text = tmp_path / "notes.txt"
    text.write_text("not a fit\n")
    with pytest.raises(ValueError, match="notes.txt.*not a NetCDF"):
        samplax.load(str(text))
    with pytest.raises(FileNotFoundError):
        samplax.load(str(tmp_path / "absent.nc"))


def test_atomic_write_leaves_the_old_file_when_interrupted(tmp_path, monkeypatch):
    path = tmp_path / "manifest.json"
    path.write_bytes(b"old")

    def crash(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.atomic_write(str(path), b"new")
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["manifest.json"]  # no temporary file left behind


# ---------------------------------------------------------------------------------------------------------------------
# 4. no dropped draws
@pytest.mark.parametrize("every", range(1, DRAWS + 1))
@pytest.mark.slow
def test_every_residue_keeps_every_draw(every, whole, tmp_path):
    """draws=10 with checkpoint_every 1..10, with and without a checkpoint: the uninterrupted run's draws, exactly 10
    sample statistics per chain, no NaN."""
    for result in (_fit(checkpoint_every=every), _fit(checkpoint=str(tmp_path / "ck"), checkpoint_every=every)):
        np.testing.assert_array_equal(_lam(result), _lam(whole))
        for name, values in result.idata.sample_stats.data_vars.items():
            assert values.shape[:2] == (2, DRAWS), name
            assert not np.isnan(np.asarray(values, dtype=float)).any(), name
        np.testing.assert_array_equal(
            result.idata.sample_stats["diverging"].values, whole.idata.sample_stats["diverging"].values
        )
        assert result.idata.log_likelihood["y"].shape[:2] == (2, DRAWS)


@pytest.mark.parametrize("every, done", [(3, 3), (3, 2), (4, 2), (7, 1)])
def test_resume_into_the_shorter_last_chunk(every, done, whole, tmp_path):
    """Killed after `done` chunks (the short last one still to run): resume gives the uninterrupted draws."""
    path = tmp_path / "ck"
    _fit(checkpoint=str(path), checkpoint_every=every)
    manifest = _manifest(path)
    manifest["completed_chunks"] = done
    for index in range(done, manifest["num_chunks"]):
        os.remove(path / f"chunk_{index:05d}.npz")
        del manifest["files"][f"chunk_{index:05d}.npz"]
    _write_manifest(path, manifest)
    resumed = samplax.resume(str(path), progress=False)
    np.testing.assert_array_equal(_lam(resumed), _lam(whole))
    np.testing.assert_array_equal(
        resumed.idata.sample_stats["acceptance_rate"].values, whole.idata.sample_stats["acceptance_rate"].values
    )


@pytest.mark.slow
def test_thinned_residue_keeps_every_draw(tmp_path):
    """thin=2 in chunks of 4 + 4 + 2 kept draws (with and without a checkpoint) equals five chunks of 2 (two compiled
    programs in all: the short last chunk has the length of the reference's chunks)."""
    reference = _fit(thin=2, checkpoint_every=2)
    for result in (_fit(thin=2, checkpoint_every=4), _fit(thin=2, checkpoint=str(tmp_path / "ck"), checkpoint_every=4)):
        np.testing.assert_array_equal(_lam(result), _lam(reference))
        assert result.idata.sample_stats["acceptance_rate"].shape == (2, DRAWS)


# ---------------------------------------------------------------------------------------------------------------------
# the manifest validator, property-based: any input is accepted unchanged or refused with a ValueError
def _valid_manifest() -> dict:
    manifest = {
        "method": "nuts",
        "options": {"target_accept": 0.8},
        "chains": 2,
        "warmup": 20,
        "draws": 10,
        "seed": 0,
        "precision": "float32",
        "init": None,
        "model_ref": "zoo:gamma_poisson",
        "thin": 1,
        "log_likelihood": True,
        "coords": None,
        "dims": None,
        "chunk_size": 3,
        "num_chunks": 4,
        "completed_chunks": 2,
        "warmup_done": True,
        "device_layout": {"platform": "cpu", "local_devices": 1, "processes": 1},
        "key_data": [0, 0],
        "data_fingerprint": "a" * 64,
        "model_fingerprint": "b" * 64,
        "model": {
            "sites": [["lam", [], "Gamma"]],
            "discrete_sites": [],
            "observed": {"y": [10]},
            "deterministic": {},
            "code_sha256": "c" * 64,
            "python": "3.11",
        },
        "sites": {"lam": []},
        "format_version": checkpoint.CHECKPOINT_FORMAT_VERSION,
        "files": {
            "data.npz": "d" * 64,
            "warmup.npz": "e" * 64,
            "chunk_00000.npz": "f" * 64,
            "chunk_00001.npz": "0" * 64,
        },
    }
    manifest["settings_sha256"] = checkpoint.settings_digest(manifest)
    return manifest


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


def _accepted_unchanged_or_value_error(manifest):
    before = copy.deepcopy(manifest)
    try:
        result = checkpoint.validate_manifest(manifest, "test/manifest.json")
    except ValueError as err:
        assert "test/manifest.json" in str(err)
        return False
    assert result is manifest and result == before
    return True


def test_valid_manifest_is_accepted():
    assert _accepted_unchanged_or_value_error(_valid_manifest())


@settings(max_examples=150, deadline=None)
@given(value=JSON)
def test_random_json_is_accepted_unchanged_or_refused(value):
    _accepted_unchanged_or_value_error(value)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), rehash=st.booleans())
def test_mutated_manifest_is_accepted_unchanged_or_refused(data, rehash):
    """Replace, delete or add fields (nested ones too), with and without a forged settings digest."""
    manifest = _valid_manifest()
    for _ in range(data.draw(st.integers(1, 3))):
        container = manifest
        if data.draw(st.booleans()):  # one level down when the field holds an object
            field = data.draw(st.sampled_from(sorted(manifest)))
            if isinstance(manifest[field], dict) and manifest[field]:
                container = manifest[field]
        action = data.draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "add":
            container[data.draw(st.text(max_size=8))] = data.draw(JSON)
        else:
            key = data.draw(st.sampled_from(sorted(container)))
            if action == "delete":
                del container[key]
            else:
                container[key] = data.draw(JSON | st.integers(-3, 12))
    if rehash and isinstance(manifest.get("settings_sha256"), str):
        manifest["settings_sha256"] = checkpoint.settings_digest(manifest)
    _accepted_unchanged_or_value_error(manifest)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(content=st.binary(max_size=64) | JSON.map(lambda v: json.dumps(v).encode()))
def test_any_manifest_file_reads_or_fails_naming_it(content):
    with tempfile.TemporaryDirectory() as folder:
        store = checkpoint.Checkpoint(folder)
        checkpoint.atomic_write(
            store.marker_path, json.dumps({"format_version": checkpoint.CHECKPOINT_FORMAT_VERSION}).encode()
        )
        with open(store.manifest_path, "wb") as handle:
            handle.write(content)
        with pytest.raises(ValueError, match="manifest.json"):
            store.read_manifest()
