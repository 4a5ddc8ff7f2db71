"""The command line (exit codes, --help, data files) and the NumPyro MCMC adapter."""

import json
import subprocess
import sys

import jax
import numpy as np
import numpyro
import pytest

import samplax
from samplax import cli
from samplax.models import zoo

pytestmark = pytest.mark.filterwarnings("ignore::samplax.infer.fit.ConvergenceWarning")


def test_zoo_and_methods_listing(capsys):
    assert cli.main(["zoo"]) == 0
    out = capsys.readouterr().out
    assert "eight_schools" in out and "gamma_poisson" in out
    assert cli.main(["methods", "nuts"]) == 0
    assert "target_accept" in capsys.readouterr().out


def test_bad_usage_exits_2_with_message_on_stderr(capsys, tmp_path):
    assert cli.main(["fit", "not_a_model"]) == 2
    assert "unknown model" in capsys.readouterr().err
    assert cli.main(["fit", "normal_normal", "--option", "step_sise=1"]) == 2
    assert "valid options" in capsys.readouterr().err
    assert cli.main(["fit", "normal_normal", "--option", "max_tree_depth=deep"]) == 2
    assert cli.main(["fit", "normal_normal", "--data", str(tmp_path / "missing.json")]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["fit"])  # argparse: missing MODEL
    assert exit_info.value.code == 2


@pytest.mark.parametrize("command", ["fit", "resume", "zoo", "methods", "report"])
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--help"])
    assert exit_info.value.code == 0
    assert f"usage: samplax {command}" in capsys.readouterr().out


def test_console_entry_point_runs_as_a_process():
    result = subprocess.run(
        [sys.executable, "-m", "samplax.cli", "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and "usage: samplax" in result.stdout
    result = subprocess.run(
        [sys.executable, "-m", "samplax.cli", "fit", "--bogus"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2 and "samplax fit: error" in result.stderr


@pytest.mark.arviz1
def test_fit_from_posteriordb_style_json_and_user_file(tmp_path, capsys):
    """A user model file plus a {"data": {...}} JSON: the CLI fits, saves NetCDF and prints the summary."""
    (tmp_path / "my_model.py").write_text(
        "import numpyro, numpyro.distributions as dist\n"
        "def model(N, y=None):\n"
        "    mu = numpyro.sample('mu', dist.Normal(0, 10))\n"
        "    with numpyro.plate('n', N):\n"
        "        numpyro.sample('y', dist.Normal(mu, 1), obs=y)\n"
    )
    (tmp_path / "data.json").write_text(json.dumps({"data": {"N": 4, "y": [1.0, 2.0, 3.0, 2.0]}}))
    out = tmp_path / "fit.nc"
    code = cli.main(
        [
            "fit",
            f"{tmp_path / 'my_model.py'}:model",
            "--data",
            str(tmp_path / "data.json"),
            "--method",
            "mala",
            "--chains",
            "2",
            "--warmup",
            "100",
            "--draws",
            "100",
            "--quiet",
            "--out",
            str(out),
        ]
    )
    assert code == 0 and out.exists()
    loaded = samplax.load(out)
    assert abs(float(loaded.idata.posterior["mu"].mean()) - 2.0) < 0.5  # posterior N(2, 1/2) approx
    assert cli.main(["fit", f"{tmp_path / 'my_model.py'}:nope"]) == 2


def test_failed_run_exits_1(tmp_path, capsys):
    (tmp_path / "broken.py").write_text(
        "import numpyro, numpyro.distributions as dist\ndef model():\n    raise RuntimeError('boom inside the model')\n"
    )
    code = cli.main(["fit", f"{tmp_path / 'broken.py'}:model", "--quiet"])
    assert code == 1
    assert "boom inside the model" in capsys.readouterr().err


@pytest.mark.parametrize("kernel", ["MALA", "NUTS"])
def test_numpyro_adapter_runs_inside_mcmc(kernel):
    """samplax kernels inside numpyro.infer.MCMC: constrained draws, normal-normal mean within 4 MCSE."""
    import samplax.numpyro as snp

    entry = zoo.get("normal_normal")
    data = entry.make_data(seed=2)
    mcmc = numpyro.infer.MCMC(
        getattr(snp, kernel)(entry.model),
        num_warmup=400,
        num_samples=800,
        num_chains=2,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(jax.random.key(0), **data)
    draws = mcmc.get_samples(group_by_chain=True)
    reference = entry.reference(data)
    site = next(iter(reference.mean))
    ess = numpyro.diagnostics.effective_sample_size(np.asarray(draws[site]))
    estimate = float(np.mean(draws[site]))
    sd = float(np.std(draws[site]))
    assert abs(estimate - float(reference.mean[site])) < 4 * sd / np.sqrt(ess)
    assert abs(sd / float(reference.sd[site]) - 1) < 0.15
    # the progress bar shows the running mean acceptance of the sampling phase, not the last step's
    last = mcmc.last_state
    accept = np.asarray(mcmc.get_extra_fields(group_by_chain=True)["accept_prob"])
    np.testing.assert_allclose(np.asarray(last.mean_accept_prob), accept.mean(axis=1), rtol=1e-4)
    assert f"acc. prob={float(last.mean_accept_prob[0]):.2f}" in mcmc.sampler.get_diagnostics_str(
        jax.tree.map(lambda x: x[0], last)
    )


# ---------------------------------------------------------------------------------------------------------------------
# summary, --var-names, --summary-rows, --coords and --dims
def derived_fit(chains=2, draws=200, size=60):
    """A hand-built fit: latent mu and tau, a deterministic p of `size` values (recorded as fit.py records them)."""
    from samplax.infer import arviz_compat

    rng = np.random.default_rng(0)
    posterior = {
        "p": rng.normal(size=(chains, draws, size)),
        "mu": rng.normal(size=(chains, draws)),
        "tau": rng.normal(size=(chains, draws)),
    }
    attrs = {
        "method": "nuts",
        "options": "{}",
        "deterministic_sites": json.dumps(["p"]),
        "timing": json.dumps({"sampling_s": 2.0}),
    }
    idata = arviz_compat.from_dict(
        {"posterior": posterior, "sample_stats": {"diverging": np.zeros((chains, draws), bool)}}, attrs=attrs
    )
    return samplax.infer.fit.Fit(idata)


@pytest.mark.arviz1
def test_summary_lists_latent_sites_first_and_caps_long_tables(capsys):
    """62 rows capped at 10: the latent rows, then 8 deterministic rows under their heading, then a note with the
    number of rows left out and how to see them; 0 prints every row; var_names picks sites."""
    import io

    out = io.StringIO()
    cli.print_summary(derived_fit(), max_rows=10, file=out)
    text = out.getvalue()
    lines = text.splitlines()
    labels = {"mu", "tau"} | {f"p[{i}]" for i in range(60)}
    rows = [line.split()[0] for line in lines if line and line.split()[0] in labels]
    assert rows == ["mu", "tau"] + [f"p[{i}]" for i in range(8)]
    heading = lines.index("deterministic sites (functions of the latent sites: reported, not judged):")
    assert lines[heading + 2].startswith("p[0]") and lines[heading - 1].startswith("tau")
    assert (
        "... 52 of 62 rows left out, 52 of them deterministic: --summary-rows 0 prints them all, --var-names "
        "mu,tau picks sites."
    ) in lines
    assert any(line.startswith("Deterministic sites (p: 60 values) are functions of the latent") for line in lines)
    everything = io.StringIO()
    cli.print_summary(derived_fit(), max_rows=0, file=everything)
    assert "p[59]" in everything.getvalue() and "left out" not in everything.getvalue()
    picked = io.StringIO()
    cli.print_summary(derived_fit(), var_names=["tau"], file=picked)
    assert picked.getvalue().split()[:10] == [
        "mean",
        "sd",
        "hdi_3%",
        "hdi_97%",
        "mcse_mean",
        "mcse_sd",
        "ess_bulk",
        "ess_tail",
        "r_hat",
        "ess_bulk_per_s",
    ]
    assert "tau" in picked.getvalue() and "mu " not in picked.getvalue() and "Deterministic" not in picked.getvalue()


@pytest.mark.arviz1
def test_report_command_filters_with_var_names(tmp_path, capsys):
    """`samplax report fit.nc --var-names` writes a report of those sites only; an unknown name exits 2 and lists
    the valid ones; a blank list is bad usage."""
    path = tmp_path / "fit.nc"
    derived_fit().save(path)
    out = tmp_path / "mu.html"
    assert cli.main(["report", str(path), "--out", str(out), "--var-names", "mu", "--quiet"]) == 0
    page = out.read_text(encoding="utf-8")
    assert "<th>mu</th>" in page and "<th>tau</th>" not in page and "p[0]" not in page
    assert cli.main(["report", str(path), "--out", str(tmp_path / "x.html"), "--var-names", "mu,nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown variable(s) ['nope']" in err and "['mu', 'p', 'tau']" in err
    assert cli.main(["report", str(path), "--var-names", " , "]) == 2
    assert "--var-names expects site names" in capsys.readouterr().err


@pytest.mark.parametrize(
    "flag, content, message",
    [
        ("--coords", None, "coords file {path!r} does not exist"),
        ("--coords", "{'school': [1]}", "coords file {path!r} is not valid JSON"),
        ("--coords", '["a", "b"]', "coords file {path!r} must hold a JSON object of dimension name -> list of labels"),
        ("--coords", '{"school": {"a": 1}}', "coords file {path!r}: the entry 'school' must be a list of labels"),
        ("--coords", '{"school": ["a", ["b"]]}', "coords file {path!r}: the entry 'school' must be a list"),
        ("--dims", None, "dims file {path!r} does not exist"),
        ("--dims", "not json", "dims file {path!r} is not valid JSON"),
        ("--dims", '"theta"', "dims file {path!r} must hold a JSON object of site name -> list of dimension names"),
        ("--dims", '{"theta": "school"}', "dims file {path!r}: the entry 'theta' must be a list of dimension names"),
        ("--dims", '{"theta": ["school", 2]}', "dims file {path!r}: the entry 'theta' must be a list"),
    ],
)
def test_coords_and_dims_file_errors_name_the_file(tmp_path, capsys, flag, content, message):
    path = str(tmp_path / "labels.json")
    if content is not None:
        (tmp_path / "labels.json").write_text(content)
    assert cli.main(["fit", "normal_normal", flag, path, "--quiet", "--out", str(tmp_path / "fit.nc")]) == 2
    assert message.format(path=path) in capsys.readouterr().err
    assert not (tmp_path / "fit.nc").exists()  # refused before any fitting


@pytest.mark.arviz1
def test_fit_with_coords_dims_var_names_and_summary_rows(tmp_path, capsys):
    """A real CLI fit: coords and dims from files label the saved InferenceData; --summary-rows caps the printed
    table with a note; --var-names filters the summary and the warnings; an unknown name exits 2 after saving."""
    (tmp_path / "model.py").write_text(
        "import numpyro, numpyro.distributions as dist\n"
        "def model(N, y=None):\n"
        "    mu = numpyro.sample('mu', dist.Normal(0, 10))\n"
        "    with numpyro.plate('obs', N):\n"
        "        numpyro.deterministic('fitted', mu * 1.0 + 0.0 * y)\n"
        "        numpyro.sample('y', dist.Normal(mu, 1), obs=y)\n"
    )
    (tmp_path / "data.json").write_text(json.dumps({"N": 30, "y": np.linspace(1.0, 3.0, 30).tolist()}))
    (tmp_path / "coords.json").write_text(json.dumps({"unit": [f"u{i}" for i in range(30)]}))
    (tmp_path / "dims.json").write_text(json.dumps({"fitted": ["unit"], "y": ["unit"]}))
    common = [
        "fit",
        f"{tmp_path / 'model.py'}:model",
        "--data",
        str(tmp_path / "data.json"),
        "--method",
        "mala",
        "--chains",
        "2",
        "--warmup",
        "100",
        "--draws",
        "100",
        "--coords",
        str(tmp_path / "coords.json"),
        "--dims",
        str(tmp_path / "dims.json"),
    ]
    out = tmp_path / "fit.nc"
    assert cli.main(common + ["--out", str(out), "--summary-rows", "5"]) == 0, capsys.readouterr().err
    printed, err = capsys.readouterr()
    # 200 MALA draws: mu's ESS is below 400, so a warning, printed once by the CLI (not as a Python warning), and
    # never about the deterministic site
    assert "samplax: warning: Bulk ESS is below 400 for 1 parameter(s) (lowest: mu" in err
    assert "ConvergenceWarning" not in err and "fitted" not in err
    assert "... 26 of 31 rows left out" in printed and "--summary-rows 0 prints them all" in printed
    assert printed.split("\n", 2)[1].startswith("mu ")  # the latent site comes first
    assert "Deterministic sites (fitted: 30 values) are functions of the latent sites" in printed
    posterior = samplax.load(out).idata.posterior
    assert list(posterior["fitted"].dims) == ["chain", "draw", "unit"]
    assert posterior["fitted"].coords["unit"].values.tolist()[:2] == ["u0", "u1"]
    assert cli.main(common + ["--out", str(tmp_path / "mu.nc"), "--var-names", "mu", "--summary-rows", "0"]) == 0
    printed = capsys.readouterr().out
    assert "mu " in printed and "fitted" not in printed and "left out" not in printed
    assert cli.main(common + ["--out", str(tmp_path / "sigma.nc"), "--var-names", "sigma"]) == 2
    err = capsys.readouterr().err
    assert "unknown variable(s) ['sigma']" in err and "the fit was saved" in err and (tmp_path / "sigma.nc").exists()


# ---------------------------------------------------------------------------------------------------------------------
# progress of direct methods
def test_smc_progress_shows_its_tempering_loop_and_the_pieces_do_not_change_the_draws(capfd, monkeypatch):
    """smc with progress=True: stderr names the compiling clock and the tempering loop (one step per compiled piece
    here, so the bar moves after each step) and keeps one summary line; with progress=False (one piece) nothing is
    written, and the draws and log-evidence are identical (each step depends only on the carried state). The fit is
    test_fit's smc timing fit (same shapes: its compiled program is reused)."""
    import re
    import warnings

    from samplax.infer import methods

    monkeypatch.setattr(methods, "SMC_PIECE_STEPS", 1)
    entry = zoo.get("normal_normal")
    data = entry.make_data(seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        shown = samplax.fit(entry.model, data, method="smc", chains=2, draws=50, seed=1, progress=True)
        err = capfd.readouterr().err
        quiet = samplax.fit(entry.model, data, method="smc", chains=2, draws=50, seed=1, progress=False)
    assert capfd.readouterr().err == ""
    assert "smc: tempering: compiling" in err and "temperature 1.000" in err, err
    summary = [line for line in err.replace("\r", "\n").splitlines() if line.startswith("smc: done in")]
    assert len(summary) == 1 and "tempering" in summary[0] and "compiling" in summary[0], err
    steps = max(json.loads(quiet.idata.attrs["extra_tempering_steps"]))  # the slower of the two repeats
    assert steps >= 3 and {str(n) for n in range(1, steps + 1)} <= set(re.findall(r"(\d+)step \[", err)), err
    np.testing.assert_array_equal(shown.idata.posterior["mu"].values, quiet.idata.posterior["mu"].values)
    assert shown.log_evidence == quiet.log_evidence
