"""Benchmark: graph-homomorphism samplers (issue 8).

1. Glauber steps per second for the 21-node path on a 10^4-node Barabási-Albert network, many chains vectorised
   with vmap in one jit, against a plain Python/networkx implementation of the same chain (exact Glauber: x_j drawn
   uniformly from the common neighbours of its motif-neighbours' images).
2. MACC-based clustering of synthetic networks (Erdős-Rényi, Watts-Strogatz, Barabási-Albert, stochastic block model):
   MACCs estimated by samplax.graphs.macc, spectral-norm distances minimised over path reversal, average-linkage
   dendrogram saved beside the page.

    python -m benchmarks.graph_hom [--quick] [--out docs/benchmarks]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import platform
import random
import sys
import time

import jax
import jax.numpy as jnp
import networkx as nx
import numpy as np

import samplax.graphs as sg
from benchmarks import common
from samplax.kernels import graph_hom

TOPIC = "graph_hom"


def _machine() -> str:
    load = f"; load average at start {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    return (
        f"{platform.platform()}; Python {platform.python_version()}; jax {jax.__version__} "
        f"({jax.default_backend()}, {jax.device_count()} device(s)); {os.cpu_count()} CPU cores{load}"
    )


# ---------------------------------------------------------------------------------------------------------------------
# 1. Throughput
# ---------------------------------------------------------------------------------------------------------------------


def _jax_glauber_rate(network, motif, chains, steps, conditional, proposals, seed=0):
    """Steps per second (and fraction of steps that moved) of the jitted, vmapped Glauber kernel, compile excluded."""
    csr, constraints = sg.kernel_inputs(motif, network, chain="glauber")
    kernel = graph_hom.build_glauber_kernel(
        max_degree=network.max_degree,
        conditional=conditional,
        proposals=proposals,
        unweighted=network.unweighted,
        free_nodes=graph_hom.has_free_nodes(constraints),
    )
    start = jnp.asarray(sg.exact_tree_sample(motif, network, chains, np.random.default_rng(seed)), jnp.int32)

    @jax.jit
    def run(states, keys, first_step):
        def one_chain(x, key):
            def body(x, t):
                state, info = kernel(
                    jax.random.fold_in(key, first_step + t), graph_hom.HomomorphismState(x), csr, constraints
                )
                return state.homomorphism, info.is_moved

            x, moved = jax.lax.scan(body, x, jnp.arange(steps))
            return x, jnp.mean(moved)

        return jax.vmap(one_chain)(states, keys)

    keys = jax.random.split(jax.random.key(seed), chains)
    t0 = time.perf_counter()
    states, _ = jax.block_until_ready(run(start, keys, 0))
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    states, moved = jax.block_until_ready(run(states, keys, steps))
    elapsed = time.perf_counter() - t0
    return chains * steps / elapsed, float(np.mean(moved)), compile_s


def _python_glauber_rate(graph, network, motif, steps, seed=0):
    """The same chain in plain Python on networkx adjacency dicts, one chain started like samplax's (an exact draw
    from pi, so that it too spends its time where pi puts it: on the hubs); steps per second and moved fraction."""
    rng = random.Random(seed)
    adjacency = graph.adj
    k = motif.num_nodes
    start = sg.exact_tree_sample(motif, network, 1, np.random.default_rng(seed))[0]
    x = [network.labels[int(u)] for u in start]
    moved = 0
    t0 = time.perf_counter()
    for _ in range(steps):
        j = rng.randrange(k)
        if j == 0:
            candidates = list(adjacency[x[1]])
        elif j == k - 1:
            candidates = list(adjacency[x[k - 2]])
        else:
            candidates = list(set(adjacency[x[j - 1]]) & set(adjacency[x[j + 1]]))
        new = rng.choice(candidates)
        moved += new != x[j]
        x[j] = new
    elapsed = time.perf_counter() - t0
    return steps / elapsed, moved / steps


def throughput(quick: bool) -> tuple[list[dict], dict, str]:
    n, m, k = 10_000, 3, 21
    graph = nx.barabasi_albert_graph(n, m, seed=0)
    network = sg.as_network(graph, weight=None)
    motif = sg.as_motif(sg.path_motif(k))
    rows = []
    configurations = [("rejection", 4, 1024), ("rejection", 4, 4096), ("rejection", 8, 1024), ("enumerate", 8, 1024)]
    if quick:
        configurations = [("rejection", 4, 1024)]
    for conditional, proposals, chains in configurations:
        steps = (100 if quick else 1000) if conditional == "rejection" else (20 if quick else 100)
        rate, moved, compile_s = _jax_glauber_rate(network, motif, chains, steps, conditional, proposals)
        rows.append(
            dict(
                conditional=conditional,
                proposals=proposals if conditional == "rejection" else "-",
                chains=chains,
                steps=steps,
                rate=rate,
                moved=moved,
                compile_s=compile_s,
            )
        )
    python_rate, python_moved = _python_glauber_rate(graph, network, motif, 2_000 if quick else 50_000)
    baseline = dict(rate=python_rate, moved=python_moved)
    info = f"Barabási-Albert n={n}, m={m}: {network.num_edges // 2} edges, largest degree {network.max_degree}"
    return rows, baseline, info


# ---------------------------------------------------------------------------------------------------------------------
# 2. MACC clustering
# ---------------------------------------------------------------------------------------------------------------------


def _synthetic_networks(quick: bool) -> dict[str, nx.Graph]:
    n = 160 if quick else 400
    degree = 16 if quick else 24
    copies = 1 if quick else 3
    networks = {}
    for c in range(copies):
        seed = 100 + c
        networks[f"ER-{c + 1}"] = nx.gnp_random_graph(n, degree / (n - 1), seed=seed)
        networks[f"WS-{c + 1}"] = nx.watts_strogatz_graph(n, degree, 0.1, seed=seed)
        networks[f"BA-{c + 1}"] = nx.barabasi_albert_graph(n, degree // 2, seed=seed)
        blocks = [n // 4] * 4  # four communities: 90% of the neighbours inside
        inside, outside = 0.9 * degree / (n // 4 - 1), 0.1 * degree / (3 * n // 4)
        probabilities = [[inside if a == b else outside for b in range(4)] for a in range(4)]
        networks[f"SBM-{c + 1}"] = nx.stochastic_block_model(blocks, probabilities, seed=seed)
    return {
        name: graph.subgraph(max(nx.connected_components(graph), key=len)).copy() for name, graph in networks.items()
    }


def clustering(out_dir: pathlib.Path, quick: bool) -> tuple[list[str], dict, pathlib.Path, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.cluster.hierarchy import dendrogram, fcluster, linkage
    from scipy.spatial.distance import squareform

    k = 6 if quick else 11
    steps = 2_000 if quick else 10_000
    chains = 16 if quick else 64
    networks = _synthetic_networks(quick)
    names = list(networks)
    maccs, worst_z, worst_rhat, timings = {}, 0.0, 1.0, []
    for name in names:
        t0 = time.perf_counter()
        estimate = sg.macc(networks[name], k, weight=None, conditional="rejection", steps=steps, chains=chains, seed=1)
        timings.append(time.perf_counter() - t0)
        maccs[name] = estimate.matrix
        exact = sg.exact_macc(networks[name], k, weight=None)
        varying = estimate.se > 0
        worst_z = max(worst_z, float(np.max(np.abs(estimate.matrix - exact)[varying] / estimate.se[varying])))
        worst_rhat = max(worst_rhat, float(np.nanmax(estimate.rhat)))
    distances = np.array([[sg.macc_distance(maccs[a], maccs[b]) for b in names] for a in names])
    tree = linkage(squareform(distances, checks=False), method="average")
    clusters = fcluster(tree, t=4, criterion="maxclust")
    families = [name.split("-")[0] for name in names]
    pure = all(len({f for f, c in zip(families, clusters) if c == label}) == 1 for label in set(clusters))
    figure, axis = plt.subplots(figsize=(8, 4))
    dendrogram(tree, labels=names, ax=axis, color_threshold=tree[-3, 2] if len(names) > 3 else None)
    axis.set_ylabel("MACC distance (spectral norm, min over reversal)")
    axis.set_title(f"Average-linkage clustering of {len(names)} networks by their {k}-path MACC")
    figure.tight_layout()
    image = out_dir / f"{TOPIC}_dendrogram.png"
    figure.savefig(image, dpi=120)
    plt.close(figure)
    summary = dict(
        k=k,
        steps=steps,
        chains=chains,
        pure=pure,
        worst_z=worst_z,
        worst_rhat=worst_rhat,
        seconds=sum(timings),
        count=len(names),
        first_s=timings[0],
        rest_s=float(np.mean(timings[1:])),
    )
    sizes = ", ".join(
        f"{name}: {g.number_of_nodes()} nodes / {g.number_of_edges()} edges" for name, g in list(networks.items())[:4]
    )
    return names, summary, image, sizes


# ---------------------------------------------------------------------------------------------------------------------
# Page
# ---------------------------------------------------------------------------------------------------------------------


def main(out_dir: pathlib.Path, quick: bool = False) -> pathlib.Path:
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    machine = _machine()
    started = time.perf_counter()
    rows, baseline, network_info = throughput(quick)
    names, summary, image, sizes = clustering(out_dir, quick)
    total = time.perf_counter() - started
    best = max(row["rate"] for row in rows)
    enumerate_rows = [row for row in rows if row["conditional"] == "enumerate"]
    lines = [
        f"Command: `python -m benchmarks.graph_hom{' --quick' if quick else ''}` "
        f"(or `make bench`), {total:.0f} s in all"
        f"{' (quick mode: small sizes, numbers indicative only)' if quick else ''}.",
        f"Machine: {machine}.",
        "",
        "## Glauber chain throughput",
        "",
        f"21-node path motif on a {network_info}. samplax: the Glauber kernel jitted, vmapped over chains and scanned "
        "over steps (compile time excluded, reported separately). Baseline: the same chain in plain Python on "
        "networkx adjacency dicts (exact Glauber: x_j uniform over the common neighbours of its motif-neighbours' "
        "images), one chain.",
        "",
        "| implementation | conditional | proposals | chains | steps per chain | steps/s | moved per step | moves/s "
        "| compile s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        lines.append(
            f"| samplax (JAX) | {row['conditional']} | {row['proposals']} | {row['chains']} | {row['steps']} | "
            f"{row['rate']:.3g} | {row['moved']:.3f} | {row['rate'] * row['moved']:.3g} | {row['compile_s']:.1f} |"
        )
    lines.append(
        f"| Python + networkx | exact | - | 1 | - | {baseline['rate']:.3g} | {baseline['moved']:.3f} | "
        f"{baseline['rate'] * baseline['moved']:.3g} | - |"
    )
    speedup = best / baseline["rate"]
    exact_speedup = max(row["rate"] for row in enumerate_rows) / baseline["rate"] if enumerate_rows else float("nan")
    lines += [
        "",
        f"Best samplax rate: {best:.3g} steps/s ({speedup:.0f}x the Python chain; target >= 10^6 steps/s and >= 50x). "
        "Both rates fall when other processes share the cores (see the load average above): compare runs on one "
        "machine at similar load. "
        + (
            f"The literal Glauber chain (conditional='enumerate', work proportional to the largest degree) runs at "
            f"{exact_speedup:.0f}x the Python chain. "
            if enumerate_rows
            else ""
        )
        + "'rejection' is a lazy Glauber chain with the same stationary law "
        "(it keeps x_j when none of its proposals is accepted); 'moves/s' counts steps that changed the state, the "
        "fairer comparison when the two chains stay put at different rates.",
        "",
        "## MACC-based clustering of synthetic networks",
        "",
        f"{summary['count']} networks (largest components): Erdős-Rényi, Watts-Strogatz (rewiring 0.1), "
        f"Barabási-Albert and a four-block stochastic block model ({sizes}; the copies differ by seed). Each MACC is "
        f"the {summary['k']}-path MACC from `samplax.graphs.macc` (Glauber, conditional='rejection', "
        f"{summary['chains']} chains x {summary['steps']} steps, started from exact draws of pi); distances are "
        "spectral norms minimised over path reversal (`macc_distance`); average linkage.",
        "",
        f"![MACC dendrogram]({image.name})",
        "",
        f"- Cut into 4 clusters, each cluster holds a single family: {'yes' if summary['pure'] else 'no'}.",
        f"- Largest |estimate - exact| / MCSE over all MACC entries of all networks (exact by matrix powers): "
        f"{summary['worst_z']:.2f}; largest R-hat: {summary['worst_rhat']:.3f}.",
        "- Mixing caveat: single-site Glauber moves an interior path node only to a common neighbour of its two "
        "path-neighbours, so on sparse, locally tree-like networks long paths crawl. An earlier run of this page "
        "with the paper's k = 21 on mean degree 10 gave R-hat 1.2-1.7 and estimates 26 MCSE off on "
        "Erdős-Rényi graphs. The exact pivot chain was worse for k = 21 on Barabási-Albert graphs (R-hat 1.8): its "
        "acceptance ratio multiplies 19 degree ratios. Denser networks, shorter paths and many short chains started "
        "at exact draws (as here) keep R-hat near 1: check it.",
        f"- Time: {summary['seconds']:.0f} s for all MACCs ({summary['first_s']:.1f} s for the first, which compiles; "
        f"{summary['rest_s']:.1f} s each after that: networks of similar size share one compilation).",
        "",
    ]
    speed = (
        f"Glauber 21-path on BA(10^4): {best:.3g} steps/s, {speedup:.0f}x plain Python "
        f"(targets 10^6 and 50x: {'met' if best >= 1e6 and speedup >= 50 else 'not met'})"
    )
    clusters = (
        f"MACC clustering of {summary['count']} networks: families separated: {'yes' if summary['pure'] else 'no'}"
    )
    return common.write_page(
        out_dir, TOPIC, "Graph-homomorphism samplers: benchmark", f"{speed}; {clusters}", "\n".join(lines)
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("docs/benchmarks"))
    arguments = parser.parse_args()
    print(main(arguments.out, quick=arguments.quick), file=sys.stderr)
