"""The command line (exit codes, --help, data files) and the NumPyro MCMC adapter."""

import json
import subprocess
import sys

import jax
import numpy as np
import numpyro
import numpyro.distributions as dist
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
    result = subprocess.run([sys.executable, "-m", "samplax.cli", "--help"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0 and "usage: samplax" in result.stdout
    result = subprocess.run([sys.executable, "-m", "samplax.cli", "fit", "--bogus"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2 and "samplax fit: error" in result.stderr


def test_fit_from_posteriordb_style_json_and_user_file(tmp_path, capsys):
    """A user model file plus a {"data": {...}} JSON: the CLI fits, saves NetCDF and prints the summary."""
    (tmp_path / "my_model.py").write_text(
        "import numpyro, numpyro.distributions as dist\n"
        "def model(N, y=None):\n"
        "    mu = numpyro.sample('mu', dist.Normal(0, 10))\n"
        "    with numpyro.plate('n', N):\n"
        "        numpyro.sample('y', dist.Normal(mu, 1), obs=y)\n")
    (tmp_path / "data.json").write_text(json.dumps({"data": {"N": 4, "y": [1.0, 2.0, 3.0, 2.0]}}))
    out = tmp_path / "fit.nc"
    code = cli.main(["fit", f"{tmp_path / 'my_model.py'}:model", "--data", str(tmp_path / "data.json"),
                     "--method", "mala", "--chains", "2", "--warmup", "100", "--draws", "100", "--quiet",
                     "--out", str(out)])
    assert code == 0 and out.exists()
    loaded = samplax.load(out)
    assert abs(float(loaded.idata.posterior["mu"].mean()) - 2.0) < 0.5  # posterior N(2, 1/2) approx
    assert cli.main(["fit", f"{tmp_path / 'my_model.py'}:nope"]) == 2


def test_failed_run_exits_1(tmp_path, capsys):
    (tmp_path / "broken.py").write_text(
        "import numpyro, numpyro.distributions as dist\n"
        "def model():\n"
        "    raise RuntimeError('boom inside the model')\n")
    code = cli.main(["fit", f"{tmp_path / 'broken.py'}:model", "--quiet"])
    assert code == 1
    assert "boom inside the model" in capsys.readouterr().err


@pytest.mark.parametrize("kernel", ["MALA", "NUTS"])
def test_numpyro_adapter_runs_inside_mcmc(kernel):
    """samplax kernels inside numpyro.infer.MCMC: constrained draws, normal-normal mean within 4 MCSE."""
    import samplax.numpyro as snp

    entry = zoo.get("normal_normal")
    data = entry.make_data(seed=2)
    mcmc = numpyro.infer.MCMC(getattr(snp, kernel)(entry.model), num_warmup=400, num_samples=800, num_chains=2,
                              chain_method="vectorized", progress_bar=False)
    mcmc.run(jax.random.key(0), **data)
    draws = mcmc.get_samples(group_by_chain=True)
    reference = entry.reference(data)
    site = next(iter(reference.mean))
    ess = numpyro.diagnostics.effective_sample_size(np.asarray(draws[site]))
    estimate = float(np.mean(draws[site]))
    sd = float(np.std(draws[site]))
    assert abs(estimate - float(reference.mean[site])) < 4 * sd / np.sqrt(ess)
    assert abs(sd / float(reference.sd[site]) - 1) < 0.15
