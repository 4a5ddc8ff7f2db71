"""A process spawned by tests/infer/test_distributed.py (emulated devices, multi-process jobs on loopback).

python tests/infer/_admm_worker.py devices OUT.json
    one process with 4 emulated CPU devices (XLA_FLAGS set by the test): admm on 1 device and on 4 devices for
    three graphs (one per collective); writes the largest differences between the two runs' draws.
python tests/infer/_admm_worker.py fit OUT.npz PORT PROCESS_ID [then-long]
    one process of a 2-process job (2 CPU devices each): samplax.fit(method="admm") on a Bayesian linear
    regression where this process holds only its half of the observations; process 0 writes the draws.
    With "then-long", both processes go on sampling for a long time afterwards (the test stops a peer).
python tests/infer/_admm_worker.py long - PORT PROCESS_ID
    one process of a 2-process job that samples for a long time (the test kills or stops its peer).
python tests/infer/_admm_worker.py fail - PORT PROCESS_ID FAILING_ID
    one process of a 2-process job (2 s heartbeat) that calls samplax.fit like `fit`; process FAILING_ID passes
    an unknown option, so its fit raises ValueError while the other one goes on into the run.
python tests/infer/_admm_worker.py early - PORT PROCESS_ID
    one process of a 2-process job (2 s heartbeat) like `long`, except that process 1 stops after 1000
    iterations and its program ends normally while process 0 still needs it.
"""

from __future__ import annotations

import json
import os
import sys
import warnings

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

HEARTBEAT_S = 5.0


def regression_data(num_observations=160, seed=3):
    import numpy as np

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(num_observations, 2))
    y = X @ np.array([1.0, -2.0]) + 4.0 * rng.normal(size=num_observations)
    return {"X": X, "y": y}


def regression_model(X, y=None):
    import numpy as np
    import numpyro
    import numpyro.distributions as dist

    theta = numpyro.sample("theta", dist.Normal(0.0, np.sqrt(10.0)).expand([X.shape[1]]).to_event(1))
    with numpyro.plate("observations", X.shape[0]):
        numpyro.sample("y", dist.Normal(X @ theta, 4.0), obs=y)


def logistic_model(X, y=None):
    import numpyro
    import numpyro.distributions as dist

    theta = numpyro.sample("theta", dist.Normal(0.0, 2.0).expand([X.shape[1]]).to_event(1))
    with numpyro.plate("observations", X.shape[0]):
        numpyro.sample("y", dist.Bernoulli(logits=X @ theta), obs=y)


FIT_SETTINGS = dict(
    method="admm",
    chains=8,
    warmup=30,
    draws=20,
    seed=5,
    progress=False,
    precision="float64",
    num_agents=8,
    graph="cycle",
)


def devices(out_path):
    import jax
    import numpy as np

    import samplax

    assert jax.device_count() == 4, jax.devices()
    data = regression_data(150)
    logistic = dict(data)
    logistic["y"] = (data["y"] > 0).astype(np.int64)
    cases = {
        "cycle8_ppermute": (regression_model, data, dict(num_agents=8, graph="cycle")),
        "complete5_psum_padded": (regression_model, data, dict(num_agents=5, graph="complete")),
        "star6_allgather_newton_padded": (logistic_model, logistic, dict(num_agents=6, graph="star", newton_steps=3)),
    }
    report = {}
    for name, (model, case_data, options) in cases.items():
        runs = []
        for num_devices in (1, 4):
            fit = samplax.fit(
                model,
                case_data,
                method="admm",
                chains=6,
                warmup=20,
                draws=10,
                seed=2,
                progress=False,
                precision="float64",
                num_devices=num_devices,
                **options,
            )
            runs.append(
                (
                    fit.idata.posterior["theta"].values,
                    fit.idata.sample_stats["agent_z"].values,
                    int(json.loads(fit.idata.attrs["extra_devices"])),
                )
            )
        (one, one_agents, d1), (four, four_agents, d4) = runs
        report[name] = {
            "posterior": float(np.max(np.abs(one - four))),
            "agents": float(np.max(np.abs(one_agents - four_agents))),
            "scale": float(np.max(np.abs(one))),
            "devices": [d1, d4],
        }
    with open(out_path, "w") as handle:
        json.dump(report, handle)


def fit_job(out_path, port, process_id, then_long=False):
    import numpy as np

    from samplax.infer import distributed

    distributed.initialize(f"127.0.0.1:{port}", 2, process_id, heartbeat_s=HEARTBEAT_S, num_cpu_devices=2)
    import samplax
    import samplax.infer.method_admm  # noqa: F401

    data = regression_data()
    half = len(data["y"]) // 2
    mine = {key: value[process_id * half : (process_id + 1) * half] for key, value in data.items()}
    fit = samplax.fit(regression_model, mine, num_observations=len(data["y"]), **FIT_SETTINGS)
    if distributed.is_output_process():
        np.savez(
            out_path,
            theta=fit.idata.posterior["theta"].values,
            agents=fit.idata.sample_stats["agent_z"].values,
            dual_sum=fit.idata.sample_stats["dual_sum"].values,
            devices=json.loads(fit.idata.attrs["extra_devices"]),
            processes=json.loads(fit.idata.attrs["extra_processes"]),
        )
    print(f"process {process_id} fitted", flush=True)
    if then_long:
        long_run(process_id)
    distributed.shutdown()
    print(f"process {process_id} finished", flush=True)


def long_job(port, process_id):
    from samplax.infer import distributed

    distributed.initialize(f"127.0.0.1:{port}", 2, process_id, heartbeat_s=HEARTBEAT_S, num_cpu_devices=1)
    long_run(process_id)


def early_job(port, process_id):
    from samplax.infer import distributed

    distributed.initialize(f"127.0.0.1:{port}", 2, process_id, heartbeat_s=2.0, num_cpu_devices=1)
    long_run(process_id, draws=1_000 if process_id == 1 else 20_000_000, chunk_size=500)
    print(f"process {process_id} ended", flush=True)


def fail_job(port, process_id, failing_id):
    from samplax.infer import distributed

    distributed.initialize(f"127.0.0.1:{port}", 2, process_id, heartbeat_s=2.0, num_cpu_devices=1)
    import samplax
    import samplax.infer.method_admm  # noqa: F401

    bad = {"bogus": 1} if process_id == failing_id else {}
    samplax.fit(regression_model, regression_data(), **dict(FIT_SETTINGS, num_agents=2), **bad)
    print(f"process {process_id} fitted", flush=True)


def long_run(process_id, draws=20_000_000, chunk_size=200_000):
    """A long D-ADMMS run (quadratic agents, closed form) straight on the kernel and the distributed driver."""
    import jax
    import numpy as np

    from samplax.infer import agents, distributed
    from samplax.kernels import admm

    num_agents, dim = 4, 2
    topology = admm.make_topology("cycle", num_agents)
    mesh = agents.agent_mesh()
    layout = admm.make_layout(num_agents, num_shards=int(mesh.devices.size), num_groups=2)
    precision = np.broadcast_to(np.eye(dim), (num_agents, dim, dim))
    data = admm.QuadraticPotential(precision, np.ones((num_agents, dim)))
    slots = layout.group_slots(process_id)
    block = admm.make_agent_block(topology, layout, rho=5.0, data=data, slots=slots)

    def make_sampler(local):
        return admm.admm(
            local, admm.make_exchange(topology, layout, distributed.AGENT_AXIS), rho=5.0, solver="closed_form"
        )

    print(f"process {process_id} sampling", flush=True)
    agents.run_agents(
        make_sampler,
        block,
        layout,
        mesh,
        key=jax.random.key(0),
        num_replicas=2,
        dim=dim,
        warmup=0,
        draws=draws,
        chunk_size=chunk_size,
        record_agents=False,
    )
    print(f"process {process_id} finished without noticing the lost peer", flush=True)


if __name__ == "__main__":
    warnings.simplefilter("ignore")
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    mode = sys.argv[1]
    if mode == "devices":
        devices(sys.argv[2])
    elif mode == "fit":
        fit_job(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), then_long=sys.argv[5:] == ["then-long"])
    elif mode == "long":
        long_job(int(sys.argv[3]), int(sys.argv[4]))
    elif mode == "early":
        early_job(int(sys.argv[3]), int(sys.argv[4]))
    elif mode == "fail":
        fail_job(int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
    else:
        raise SystemExit(f"unknown mode {mode!r}")
