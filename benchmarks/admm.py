"""ADMM: D-ADMMS against decentralised SGLD (agent W2, logistic accuracy), against full-data NUTS, weak scaling.

Four measurements, all in one process except the scaling runs (`main` writes ``<out_dir>/admm.md``):

1. Agent W2 on the paper's Bayesian linear regression (d = 2, noise sd 4, prior N(0, 10 I) split evenly): for each
   agent, the Gaussian W2 between the law of its iterate over the replicas at iteration k and the exact posterior,
   averaged over agents, at k = 10 and 100, from x^0 ~ N(0, I). Settings: cycle of 5 agents with 50 points each,
   cycle of 20 and complete graph of 20 with 10 points each; >= 1000 replicas (the W2 noise floor of 100 replicas is
   0.02-0.05). D-ADMMS (rho = 5, calibrated noise; the paper's noise as a second row) against D-SGLD with the best
   step size of a grid (chosen by agent W2 at k = 100, reported). Both run on the same agent blocks, graph and
   collectives (`samplax.infer.distributed.run_agents`), on quadratic agents (closed-form ADMM step, exact
   gradients for D-SGLD). The exact stationary W2 of D-ADMMS (Lyapunov) is given for reference.
2. Bayesian logistic regression (the paper's: d = 3, X ~ N(0, 20 I), 50 points per agent): training accuracy of the
   agents' draws (mean over agents and replicas of the fraction of labels predicted by sign(x_i . theta)) against
   iterations, D-ADMMS (Newton solver) vs D-SGLD, through ``samplax.fit``.
3. Accuracy against a full-data NUTS fit (samplax nuts, 4 chains) on the zoo's logistic regression: posterior means
   and standard deviations of admm and dsgld (network average, after warm-up) relative to NUTS.
4. Weak scaling on 1 -> 2 -> 4 emulated CPU devices (a subprocess each, XLA_FLAGS): 4 agents per device with
   500 logistic-regression points each (data grow with the devices), time per iteration in steady state.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common

__all__ = ["main", "FULL", "QUICK"]

TOPIC = "admm"
RHO = 5.0
TUNED_RHO_DEGREE = 15.0  # the rule of thumb rho * degree ≈ 10-20: the tuned rows use rho = 15 / mean degree

FULL = dict(
    w2_settings=(("cycle", 5, 50), ("cycle", 20, 10), ("complete", 20, 10)), w2_replicas=2000,
    w2_iterations=(10, 100), dsgld_steps=(0.003, 0.01, 0.03, 0.1, 0.3),
    logistic_agents=(5, 20), logistic_points=50, logistic_replicas=200, logistic_iterations=(1, 2, 5, 10, 20, 50, 100),
    logistic_dsgld_step=None,  # chosen from dsgld_steps by accuracy at the last iteration
    nuts=dict(num_observations=250, agents=5, chains=4, warmup=1000, draws=1000, admm_chains=16, admm_warmup=300,
              admm_draws=1000, methods=("admm", "dsgld")),
    scaling_devices=(1, 2, 4), scaling=dict(agents_per_device=4, points_per_agent=500, dim=5, replicas=16,
                                            draws=200, warmup=20, compare_one_device=True),
    admm_rows=(("calibrated", None), ("paper", None), ("calibrated", "tuned")),  # (noise, rho: None = RHO)
)
QUICK = dict(
    w2_settings=(("cycle", 5, 50),), w2_replicas=1000, w2_iterations=(10, 100), dsgld_steps=(0.01,),
    logistic_agents=(5,), logistic_points=50, logistic_replicas=20, logistic_iterations=(1, 10),
    logistic_dsgld_step=0.01,
    nuts=dict(num_observations=100, agents=5, chains=1, warmup=100, draws=100, admm_chains=2, admm_warmup=20,
              admm_draws=50, methods=("admm",)),
    scaling_devices=(2,), scaling=dict(agents_per_device=2, points_per_agent=50, dim=3, replicas=2, draws=10,
                                       warmup=2, compare_one_device=False),
    admm_rows=(("calibrated", None),),
)


@contextlib.contextmanager
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


# --------------------------------------------------------------------------------------------- 1. agent W2
def linear_regression(num_agents, points, seed=0, dim=2, noise_sd=4.0, prior_variance=10.0):
    """The paper's setting as quadratic agents (`samplax.kernels.admm.regression_agents`) with the exact posterior."""
    from samplax.kernels import admm

    precision, linear = admm.regression_agents(num_agents, points, dim, seed, noise_sd, prior_variance)
    covariance = np.linalg.inv(precision.sum(0))
    return precision, linear, covariance @ linear.sum(0), covariance


def _run_quadratic(method, topology, precision, linear, *, replicas, iterations, step_size=None, noise="calibrated",
                   seed=0, rho=RHO):
    """Agent iterates (replicas, iterations, agents, dim) of admm or dsgld on quadratic agents, one device."""
    from samplax.infer import distributed
    from samplax.kernels import admm

    n, dim = linear.shape
    layout = admm.make_layout(n)
    data = admm.QuadraticPotential(precision, linear)
    mesh = distributed.agent_mesh(1)
    if method == "admm":
        block = admm.make_agent_block(topology, layout, rho=rho, noise=noise, data=data)

        def make_sampler(local):
            return admm.admm(local, admm.make_exchange(topology, layout, distributed.AGENT_AXIS), rho=rho,
                             solver="closed_form")
    else:
        block = admm.make_agent_block(topology, layout, rho=1.0, noise=0.0, data=data,
                                      neighbour_weights=admm.metropolis_weights(topology))
        kind = None if topology.regular else "gather"

        def quadratic(x, q):
            return 0.5 * x @ q.precision @ x - q.linear @ x

        def make_sampler(local):
            exchange = admm.make_exchange(topology, layout, distributed.AGENT_AXIS, kind=kind)
            return admm.dsgld(local, exchange, quadratic, lambda x, q: 0.0, step_size=step_size)

    run = distributed.run_agents(make_sampler, block, layout, mesh, key=jax.random.key(seed), num_replicas=replicas,
                                 dim=dim, warmup=0, draws=iterations, chunk_size=iterations)
    return run.agent_positions, run.network_average


def _agent_w2(agents, iteration, mean, covariance):
    """Mean over agents of W2(N(empirical mean, cov) of agent i at ``iteration`` (1-based), posterior)."""
    from samplax.kernels.admm import gaussian_w2

    draws = agents[:, iteration - 1]  # (replicas, agents, dim)
    values = [gaussian_w2(draws[:, i].mean(0), np.cov(draws[:, i].T), mean, covariance)
              for i in range(draws.shape[1])]
    return float(np.mean(values))


def _average_w2(average, iteration, mean, covariance):
    from samplax.kernels.admm import gaussian_w2

    draws = average[:, iteration - 1]
    return gaussian_w2(draws.mean(0), np.cov(draws.T), mean, covariance)


def w2_study(s) -> list[dict]:
    from samplax.kernels import admm

    rows = []
    for graph, num_agents, points in s["w2_settings"]:
        topology = admm.make_topology(graph, num_agents)
        precision, linear, mean, covariance = linear_regression(num_agents, points)
        exact = admm.linear_gaussian_stationary(topology, RHO, admm.noise_scale("calibrated", topology, RHO),
                                                precision, linear)
        stationary = float(np.mean([admm.gaussian_w2(exact["mean"][i], exact["covariance"][2 * i:2 * i + 2,
                                                                                           2 * i:2 * i + 2],
                                                     mean, covariance) for i in range(num_agents)]))
        last = max(s["w2_iterations"])
        label = f"{graph} of {num_agents}, {points} points each"
        tuned = TUNED_RHO_DEGREE / float(topology.degrees.mean())
        for noise, rho_choice in s["admm_rows"]:
            rho = tuned if rho_choice == "tuned" else RHO
            start = time.perf_counter()
            agents, average = _run_quadratic("admm", topology, precision, linear, replicas=s["w2_replicas"],
                                             iterations=last, noise=noise, rho=rho)
            if rho != RHO:
                exact = admm.linear_gaussian_stationary(topology, rho, admm.noise_scale(noise, topology, rho),
                                                        precision, linear)
                stationary = float(np.mean([admm.gaussian_w2(
                    exact["mean"][i], exact["covariance"][2 * i:2 * i + 2, 2 * i:2 * i + 2], mean, covariance)
                    for i in range(num_agents)]))
            rows.append({"setting": label, "method": f"admm ({noise} noise, rho {rho:.3g})", "step": "-",
                         **{f"agent W2 @{k}": _agent_w2(agents, k, mean, covariance) for k in s["w2_iterations"]},
                         "average W2 @last": _average_w2(average, last, mean, covariance),
                         "stationary agent W2 (exact)": stationary if noise == "calibrated" else None,
                         "seconds": time.perf_counter() - start})
        best = None
        for step in s["dsgld_steps"]:
            start = time.perf_counter()
            agents, average = _run_quadratic("dsgld", topology, precision, linear, replicas=s["w2_replicas"],
                                             iterations=last, step_size=step)
            w2 = {k: _agent_w2(agents, k, mean, covariance) for k in s["w2_iterations"]}
            candidate = {"setting": label, "method": "dsgld (best step of the grid)", "step": step,
                         **{f"agent W2 @{k}": w2[k] for k in s["w2_iterations"]},
                         "average W2 @last": _average_w2(average, last, mean, covariance),
                         "stationary agent W2 (exact)": None, "seconds": time.perf_counter() - start}
            if np.isfinite(w2[last]) and (best is None or w2[last] < best[f"agent W2 @{last}"]):
                best = candidate
        if best is not None:
            rows.append(best)
    return rows


# ------------------------------------------------------------------------------------- 2. logistic regression
def logistic_data(num_agents, points, seed=0, dim=3):
    """The paper's logistic regression: X ~ N(0, 20 I), labels from a N(0, I) truth."""
    rng = np.random.default_rng(seed)
    truth = rng.normal(size=dim)
    X = rng.normal(size=(num_agents * points, dim)) * np.sqrt(20.0)
    y = (rng.uniform(size=num_agents * points) < 1.0 / (1.0 + np.exp(-X @ truth))).astype(np.int64)
    return {"X": X, "y": y}


def logistic_model(X, y=None):
    import numpyro
    import numpyro.distributions as dist

    theta = numpyro.sample("theta", dist.Normal(0.0, 1.0).expand([X.shape[1]]).to_event(1))
    with numpyro.plate("observations", X.shape[0]):
        numpyro.sample("y", dist.Bernoulli(logits=X @ theta), obs=y)


def _accuracy(agent_z, data, iterations):
    """Training accuracy of every agent's draw at each iteration (1-based), averaged over agents and replicas."""
    X, y = data["X"], data["y"]
    out = {}
    for k in iterations:
        theta = agent_z[:, k - 1]  # (replicas, agents, dim)
        predictions = (np.einsum("rad,nd->ran", theta, X) > 0).astype(int)
        out[k] = float(np.mean(predictions == y[None, None, :]))
    return out


def logistic_study(s) -> list[dict]:
    import samplax

    rows = []
    last = max(s["logistic_iterations"])
    for num_agents in s["logistic_agents"]:
        data = logistic_data(num_agents, s["logistic_points"])
        common_args = dict(chains=s["logistic_replicas"], warmup=0, draws=last, seed=0, progress=False,
                           num_agents=num_agents, graph="cycle")
        with _quiet():
            start = time.perf_counter()
            fit = samplax.fit(logistic_model, data, method="admm", solver="newton", **common_args)
            accuracy = _accuracy(fit.idata.sample_stats["agent_z"].values, data, s["logistic_iterations"])
            rows.append({"agents": num_agents, "method": "admm (Newton, rho 5)", "step": "-", **accuracy,
                         "seconds": time.perf_counter() - start})
            best = None
            steps = [s["logistic_dsgld_step"]] if s["logistic_dsgld_step"] else s["dsgld_steps"]
            for step in steps:
                start = time.perf_counter()
                fit = samplax.fit(logistic_model, data, method="dsgld", step_size=step, **common_args)
                accuracy = _accuracy(fit.idata.sample_stats["agent_z"].values, data, s["logistic_iterations"])
                candidate = {"agents": num_agents, "method": "dsgld (best step)", "step": step, **accuracy,
                             "seconds": time.perf_counter() - start}
                if np.isfinite(accuracy[last]) and (best is None or accuracy[last] > best[last]):
                    best = candidate
            rows.append(best)
    return rows


# ------------------------------------------------------------------------------------------------ 3. vs NUTS
def nuts_comparison(s) -> dict:
    import samplax
    from samplax.models import zoo

    p = s["nuts"]
    entry = zoo.get("logistic_regression")
    data = entry.make_data(num_observations=p["num_observations"])
    results = {}
    with _quiet():
        start = time.perf_counter()
        reference = samplax.fit(entry.model, data, method="nuts", chains=p["chains"], warmup=p["warmup"],
                                draws=p["draws"], seed=0, progress=False)
        results["nuts"] = (reference, time.perf_counter() - start)
        method_options = {"admm": {"solver": "newton"}, "dsgld": {"step_size": 0.003}}
        for method in p["methods"]:
            options = method_options[method]
            start = time.perf_counter()
            fit = samplax.fit(entry.model, data, method=method, chains=p["admm_chains"], warmup=p["admm_warmup"],
                              draws=p["admm_draws"], seed=0, progress=False, num_agents=p["agents"], graph="cycle",
                              record_agents=False, **options)
            results[method] = (fit, time.perf_counter() - start)
    return results


def _flat(posterior):
    columns = []
    for name in ("intercept", "weights"):
        values = posterior[name].values
        columns.append(values.reshape(values.shape[0] * values.shape[1], -1))
    return np.concatenate(columns, axis=1)


# ------------------------------------------------------------------------------------------- 4. weak scaling
def _scaling_worker(num_devices: int, settings: dict, out: str):
    """Runs in a subprocess with ``num_devices`` emulated CPU devices."""
    import samplax
    import samplax.infer.method_admm  # noqa: F401

    agents = settings["agents_per_device"] * num_devices
    rng = np.random.default_rng(0)
    n = agents * settings["points_per_agent"]
    X = rng.normal(size=(n, settings["dim"]))
    truth = rng.normal(size=settings["dim"])
    y = (rng.uniform(size=n) < 1.0 / (1.0 + np.exp(-X @ truth))).astype(np.int64)
    with _quiet():
        fit = samplax.fit(logistic_model, {"X": X, "y": y}, method="admm", chains=settings["replicas"],
                          warmup=settings["warmup"], draws=settings["draws"], seed=0, progress=False,
                          num_agents=agents, graph="cycle", num_devices=num_devices, record_agents=False,
                          solver="newton")
        one_device = fit if num_devices == 1 or not settings["compare_one_device"] else samplax.fit(
            logistic_model, {"X": X, "y": y}, method="admm", chains=settings["replicas"], warmup=settings["warmup"],
            draws=settings["draws"], seed=0, progress=False, num_agents=agents, graph="cycle", num_devices=1,
            record_agents=False, solver="newton")
    attrs = fit.idata.attrs
    record = {"devices": num_devices, "agents": agents, "observations": n,
              "compile_s": float(json.loads(attrs["extra_compile_s"])),
              "sampling_s": float(json.loads(attrs["extra_sampling_s"])), "draws": settings["draws"],
              "one_device_sampling_s": float(json.loads(one_device.idata.attrs["extra_sampling_s"]))}
    Path(out).write_text(json.dumps(record))


def weak_scaling(s, tmp_dir: Path) -> list[dict]:
    records = []
    for num_devices in s["scaling_devices"]:
        out = tmp_dir / f"scaling_{num_devices}.json"
        env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=f"--xla_force_host_platform_device_count={num_devices}")
        command = [sys.executable, "-m", "benchmarks.admm", "--scaling-worker", str(num_devices),
                   json.dumps(s["scaling"]), str(out)]
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800,
                                cwd=str(Path(__file__).resolve().parent.parent))
        if result.returncode != 0:
            raise RuntimeError(f"scaling run on {num_devices} devices failed: {result.stderr[-2000:]}")
        records.append(json.loads(out.read_text()))
    return records


# -------------------------------------------------------------------------------------------------- the page
def _page(s, quick, info, w2_rows, logistic_rows, nuts, scaling, seconds):
    iterations = s["w2_iterations"]
    w2_headers = ["setting", "method", "step", *[f"agent W2 @{k}" for k in iterations], "average W2 @last",
                  "stationary agent W2 (exact)", "seconds"]
    w2_table = common.markdown_table(w2_headers, [[row[h] for h in w2_headers] for row in w2_rows])

    logistic_headers = ["agents", "method", "step", *[str(k) for k in s["logistic_iterations"]], "seconds"]
    logistic_table = common.markdown_table(
        logistic_headers, [[row["agents"], row["method"], row["step"], *[row[k] for k in s["logistic_iterations"]],
                            row["seconds"]] for row in logistic_rows])

    reference = _flat(nuts["nuts"][0].idata.posterior)
    ref_mean, ref_sd = reference.mean(0), reference.std(0)
    names = ["intercept"] + [f"weights[{i}]" for i in range(reference.shape[1] - 1)]
    nuts_rows = []
    for method in [name for name in ("admm", "dsgld") if name in nuts]:
        fit, wall = nuts[method]
        draws = _flat(fit.idata.posterior)
        shift = np.abs(draws.mean(0) - ref_mean) / ref_sd
        ratio = draws.std(0) / ref_sd
        nuts_rows.append([method, float(shift.max()), float(np.median(shift)), float(ratio.min()), float(ratio.max()),
                          wall])
    nuts_rows.append(["nuts (reference)", 0.0, 0.0, 1.0, 1.0, nuts["nuts"][1]])
    nuts_table = common.markdown_table(["method", "max abs(mean - NUTS) / NUTS sd", "median", "min sd / NUTS sd",
                                        "max sd / NUTS sd", "wall s (whole fit)"], nuts_rows)

    base = scaling[0]["sampling_s"] / scaling[0]["draws"]
    scaling_rows = [[r["devices"], r["agents"], r["observations"], 1e3 * r["sampling_s"] / r["draws"],
                     base / (r["sampling_s"] / r["draws"]), 1e3 * r["one_device_sampling_s"] / r["draws"],
                     r["compile_s"]] for r in scaling]
    scaling_table = common.markdown_table(["emulated devices", "agents", "observations", "ms per iteration",
                                           "weak-scaling efficiency t1 / tN",
                                           "same agents on 1 device: ms per iteration", "compile s"], scaling_rows)

    best = {row["setting"]: row for row in w2_rows if row["method"].startswith("dsgld")}
    admm_rows = {row["setting"]: row for row in w2_rows if row["method"] == f"admm (calibrated noise, rho {RHO:.3g})"}
    last = max(iterations)
    first = min(iterations)
    verdicts = []
    for setting, row in admm_rows.items():
        if setting in best:
            verdicts.append(f"{setting}: admm {row[f'agent W2 @{first}']:.2f} vs dsgld "
                            f"{best[setting][f'agent W2 @{first}']:.2f} at k={first}")
    summary = "D-ADMMS vs D-SGLD agent W2 (" + "; ".join(verdicts) + ")" + (" [quick sizes]" if quick else "")
    body = f"""
Command: `{common.command_for(TOPIC, quick)}` (or `python -m benchmarks.admm`); total {seconds:.0f} s.
{"**Quick sizes: a smoke test; the numbers mean little.**" if quick else ""}

## 1. Agent W2 to the exact posterior (Bayesian linear regression, d = 2)

Mean over agents of the Gaussian W2 between an agent's iterate over {s['w2_replicas']} replicas at iteration k and
the exact posterior; from x^0 ~ N(0, I), rho = {RHO}. "average W2 @last" is the degree-weighted network average's
W2 at k = {last}; "stationary agent W2 (exact)" is the limit of the calibrated chain's agent W2 from the Lyapunov
solution (an agent's own iterate is noisier than the posterior: the calibration targets the network average).
D-SGLD's step size is the best of {list(s['dsgld_steps'])} by agent W2 at k = {last}. The third admm row of each
setting uses rho = {TUNED_RHO_DEGREE:g} / mean degree (the rule of thumb rho d ≈ 10-20) instead of the paper's
rho = {RHO:g}: progress per iteration scales like 1 / (rho d), so the paper's rho is slow on dense graphs (on the
complete graph of 20, rho d = 95 and 100 iterations are far from stationarity); on a sparse cycle a larger rho does
not help, since information still has to travel around the ring one neighbour at a time. With "paper" noise an
agent's own iterate is closer to the posterior but the network average is not (its variance is off by a
graph-dependent factor); with calibrated noise the network average is right and each agent's iterate is
over-dispersed.

{w2_table}

## 2. Bayesian logistic regression: training accuracy against iterations

d = 3, X ~ N(0, 20 I), {s['logistic_points']} points per agent, cycle graph, {s['logistic_replicas']} replicas;
accuracy of sign(x_i . theta) on all training labels, averaged over agents and replicas, at each iteration.
D-SGLD's step is the best of {list(s['dsgld_steps'])} by the last accuracy.

{logistic_table}

## 3. Against a full-data NUTS fit

Zoo `logistic_regression` with {s['nuts']['num_observations']} observations split over {s['nuts']['agents']} agents
(cycle); {' and '.join(s['nuts']['methods'])} (dsgld: step 0.003) keep {s['nuts']['admm_draws']} iterations after
{s['nuts']['admm_warmup']} of warm-up on {s['nuts']['admm_chains']} replicas; NUTS {s['nuts']['chains']} chains x
{s['nuts']['draws']} draws.
Shifts are in NUTS posterior standard deviations, over the {reference.shape[1]} coordinates ({', '.join(names)}).

{nuts_table}

## 4. Weak scaling on emulated CPU devices

{s['scaling']['agents_per_device']} agents per device, {s['scaling']['points_per_agent']} logistic-regression points per
agent (d = {s['scaling']['dim']}), cycle graph (ppermute between devices), {s['scaling']['replicas']} replicas, Newton
solver; steady-state time per iteration over {s['scaling']['draws']} iterations, and the same agents vmapped on one
device for comparison. Emulated devices share this machine's cores ({info['cores']}; load average at the start
{info['load average (1, 5, 15 min) at start']}), so the time per iteration must grow with the work: the table measures
the collectives' overhead against plain vectorisation, not a real multi-machine speed-up.

{scaling_table}

## Machine

{common.machine_markdown(info)}
"""
    return summary, body


def main(out_dir: Path, quick: bool = False) -> Path:
    """Run the four ADMM measurements and write ``out_dir/admm.md``; return its path."""
    import tempfile


    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    s = QUICK if quick else FULL
    info = common.machine_info()
    start = time.perf_counter()
    with jax.enable_x64(False):
        w2_rows = w2_study(s)
        logistic_rows = logistic_study(s)
        nuts = nuts_comparison(s)
    with tempfile.TemporaryDirectory() as tmp:
        scaling = weak_scaling(s, Path(tmp))
    summary, body = _page(s, quick, info, w2_rows, logistic_rows, nuts, scaling, time.perf_counter() - start)
    return common.write_page(out_dir, TOPIC, "ADMM: distributed MCMC", summary, body)


if __name__ == "__main__":  # pragma: no cover
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks"))
    parser.add_argument("--scaling-worker", nargs=3, metavar=("DEVICES", "SETTINGS", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.scaling_worker:
        devices, settings, out = args.scaling_worker
        _scaling_worker(int(devices), json.loads(settings), out)
    else:
        print(main(args.out, quick=args.quick))
