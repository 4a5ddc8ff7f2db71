"""meta_gibbs: learned block proposals against gibbs and block_gibbs on 20 x 20 grid networks, against gibbs on the
open-universe mixture.

Grids (UAI 2008 families with 50, 75 and 90 % deterministic rows, evidence on a few nodes): average absolute error of
the posterior marginals P(x = 1) over the latent nodes, against exact marginals by variable elimination, as a function
of sampling wall time (4 chains pooled; the curve has one point per chunk of draws). Mixture ((m, n) = (12, 90) and
(30, 400)): the average over chains of log p(y | means, M) at the current state, against wall time from a prior
draw (no warm-up, as in the paper's plots). Every method runs in this one process, one after the other; compile and
set-up times are reported separately and are not part of the curves.
"""

from __future__ import annotations

import pathlib
import time

import jax
import numpy as np

from benchmarks import common

TOPIC = "meta_gibbs"
METHODS_GRID = ("gibbs", "block_gibbs", "meta_gibbs")
METHODS_MIXTURE = ("gibbs", "meta_gibbs")


def _settings(quick: bool) -> dict:
    if quick:
        return {
            "grid_size": 6,
            "families": ("grid50",),
            "grid_methods": ("meta_gibbs",),  # gibbs runs on the mixture: each compiled program costs seconds
            "grid_warmup": 20,
            "grid_draws": 100,
            "chains": 2,
            "num_evidence": 2,
            "mixtures": ((4, 30),),
            "mixture_draws": 50,
        }
    return {
        "grid_size": 20,
        "families": ("grid50", "grid75", "grid90"),
        "grid_methods": METHODS_GRID,
        "grid_warmup": 200,
        "grid_draws": 10000,
        "chains": 4,
        "num_evidence": 10,
        "mixtures": ((12, 90), (30, 400)),
        "mixture_draws": 2000,
    }


def _grid_rows(settings: dict, figure_rows: list) -> tuple[list, list]:
    from samplax.infer import method_gibbs as mg
    from samplax.models.bridge import build_target
    from samplax.models.zoo import grid_networks as grid

    rows, notes = [], []
    for number, family in enumerate(settings["families"]):
        size = settings["grid_size"]
        data = grid.grid_network_data(
            seed=number,
            rows=size,
            cols=size,
            deterministic_fraction=grid.FAMILIES[family],
            num_evidence=settings["num_evidence"],
        )
        start = time.perf_counter()
        marginals, _ = grid.variable_elimination_marginals(data["cpt"], data["evidence"])
        exact_seconds = time.perf_counter() - start
        latent = [(i, j) for i in range(size) for j in range(size) if data["evidence"][i, j] < 0]
        names = [grid.site_name(i, j) for i, j in latent]
        exact = np.array([marginals[i, j] for i, j in latent])
        target = build_target(grid.grid_network_model, data)
        for method in settings["grid_methods"]:
            start = time.perf_counter()
            run = mg.sample_model(
                target,
                method,
                {},
                jax.random.key(number),
                settings["chains"],
                settings["grid_warmup"],
                settings["grid_draws"],
            )
            total = time.perf_counter() - start
            draws = np.stack([run.discrete[name] for name in names], axis=-1).astype(float)  # (chains, draws, N)
            cumulative = np.cumsum(draws.sum(axis=0), axis=0) / (
                np.arange(1, draws.shape[1] + 1)[:, None] * draws.shape[0]
            )
            chunk = draws.shape[1] // len(run.extra["chunk_seconds"])
            ends = np.arange(chunk, draws.shape[1] + 1, chunk)
            times = np.cumsum(run.extra["chunk_seconds"])
            errors = np.mean(np.abs(cumulative[ends - 1] - exact[None, :]), axis=1)
            acceptance = run.sample_stats.get("block_acceptance")
            figure_rows.append((family, method, times, errors))
            rows.append(
                [
                    family,
                    method,
                    len(run.problem.instance_labels),
                    float(errors[len(errors) // 4]),
                    float(errors[-1]),
                    float(times[-1]),
                    float(times[-1]) / settings["grid_draws"] * 1e3,
                    float(np.nanmean(acceptance)) if acceptance is not None else None,
                    run.extra["compile_s"],
                    total - times[-1],
                ]
            )
        notes.append(
            f"{family}: {len(latent)} latent nodes, exact marginals by variable elimination in {exact_seconds:.1f} s"
        )
    return rows, notes


def _mixture_rows(settings: dict, figure_rows: list) -> list:
    from samplax.infer import method_gibbs as mg
    from samplax.models.bridge import build_target
    from samplax.models.zoo import open_universe as ou

    rows = []
    for m, n in settings["mixtures"]:
        data = ou.open_universe_data(seed=0, max_components=m, num_observations=n)
        target = build_target(ou.open_universe_model, data)
        loglik = jax.jit(jax.vmap(jax.vmap(lambda z, k: ou.mixture_log_likelihood(data["y"], z.reshape(m, -1), k))))
        truth = ou._true_parameters(seed=0, max_components=m, num_observations=n)
        true_ll = float(
            ou.mixture_log_likelihood(
                data["y"],
                np.pad(truth["active_means"], ((0, m - truth["active_means"].shape[0]), (0, 0))),
                int(truth["num_components"]),
            )
        )
        for method in METHODS_MIXTURE:
            start = time.perf_counter()
            run = mg.sample_model(
                target, method, {}, jax.random.key(0), settings["chains"], 0, settings["mixture_draws"]
            )
            total = time.perf_counter() - start
            values = np.asarray(loglik(run.z, run.discrete["num_components"])).mean(axis=0)  # (draws,)
            seconds = float(np.sum(run.extra["chunk_seconds"]))
            times = np.arange(1, values.size + 1) * seconds / values.size
            figure_rows.append((f"(m, n) = ({m}, {n})", method, times, values))
            quarter = values.size // 4
            acceptance = run.sample_stats.get("block_acceptance")
            rows.append(
                [
                    f"({m}, {n})",
                    method,
                    float(values[0]),
                    float(values[quarter - 1]),
                    float(values[-1]),
                    seconds,
                    float(np.mean(run.discrete["num_components"][:, -1])),
                    float(np.nanmean(acceptance)) if acceptance is not None else None,
                    true_ll,
                    run.extra["compile_s"],
                    total - seconds,
                    int(truth["num_components"]),
                ]
            )
    return rows


def _figure(path: pathlib.Path, rows: list, ylabel: str, log_y: bool, log_x: bool = False):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sorted({r[0] for r in rows}, key=[r[0] for r in rows].index)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.4), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        for name, method, times, values in rows:
            if name == panel:
                ax.plot(times, values, marker=".", label=method)
        ax.set_title(panel)
        ax.set_xlabel("sampling wall time (s)")
        ax.set_ylabel(ylabel)
        if log_y:
            ax.set_yscale("log")
        if log_x:
            ax.set_xscale("log")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(out_dir: pathlib.Path, quick: bool = False) -> pathlib.Path:
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = _settings(quick)
    info = common.machine_info()
    grid_curves, mixture_curves = [], []
    with common.CompileMeter() as meter:
        grid_rows, grid_notes = _grid_rows(settings, grid_curves)
        mixture_rows = _mixture_rows(settings, mixture_curves)
    _figure(out_dir / f"{TOPIC}_grids.png", grid_curves, "average |marginal error|", log_y=True)
    _figure(
        out_dir / f"{TOPIC}_mixture.png",
        mixture_curves,
        "log p(y | means, M), mean over chains",
        log_y=False,
        log_x=True,
    )

    equal_time = _equal_time(grid_curves)
    beats_gibbs = [f for f, r in equal_time.items() if "gibbs" in r and r["meta_gibbs"] < r["gibbs"]]
    beats_block = [f for f, r in equal_time.items() if "block_gibbs" in r and r["meta_gibbs"] < r["block_gibbs"]]
    mixture_best = {}
    for row in mixture_rows:
        mixture_best.setdefault(row[0], []).append((row[3], row[1]))
    early_wins = [size for size, results in mixture_best.items() if max(results)[1] == "meta_gibbs"]
    summary = (
        f"Grid networks ({settings['grid_size']} x {settings['grid_size']}): at equal sampling time meta_gibbs "
        f"has a lower marginal error than gibbs on {len(beats_gibbs)} of {len(equal_time)} families and than "
        f"exact block Gibbs on {len(beats_block)} of "
        f"{sum('block_gibbs' in r for r in equal_time.values())}; mixture: meta_gibbs is ahead after a quarter "
        "of the run on "
        f"{len(early_wins)} of {len(mixture_best)} sizes."
    )
    grid_table = common.markdown_table(
        [
            "family",
            "method",
            "blocks",
            "error at 1/4 time",
            "final error",
            "sampling s",
            "ms / sweep",
            "block acceptance",
            "compile s",
            "set-up s",
        ],
        grid_rows,
    )
    mixture_table = common.markdown_table(
        [
            "(m, n)",
            "method",
            "log-lik after 1 sweep",
            "log-lik at 1/4",
            "final log-lik",
            "sampling s",
            "final M (mean)",
            "block acceptance",
            "log-lik at the true means",
            "compile s",
            "set-up s",
            "true M",
        ],
        mixture_rows,
    )
    body = f"""
Command: `{common.command_for(TOPIC, quick)}` (settings: {settings}).

## Binary grid networks

{grid_table}

![marginal error against time](meta_gibbs_grids.png)

{chr(10).join("- " + note for note in grid_notes)}
- "blocks" counts the 3 x 3 motif instances (block_gibbs and meta_gibbs use the same blocks; gibbs has none).
  meta_gibbs uses the shipped proposal (trained once on the motif, never on these networks).
- Errors are the mean over latent nodes of |estimate - exact| after pooling the chains' draws up to that time.
  With deterministic rows the posterior has separated modes; every chain keeps the mode it found in warm-up, so
  all curves level off. "set-up s" is the one-time work before sampling: reading the model's dependency graph and
  tables (about 400 sites), compiling, and the 200 warm-up sweeps.

## Open-universe Gaussian mixture

{mixture_table}

![log-likelihood against time](meta_gibbs_mixture.png)

- Both methods start from the same prior draws; gibbs updates M by enumeration and each mean coordinate by
  random-walk Metropolis; meta_gibbs adds learned two-means moves on random pairs of active components.

## Where the learned proposal wins and where not

{_verdict(grid_rows, mixture_rows, equal_time, mixture_curves)}

## Machine

{common.machine_markdown(info)}

Compilations during the run: {meter.compiles} ({meter.seconds:.1f} s tracing, lowering and compiling; slowest:
{meter.largest()}).
"""
    return common.write_page(out_dir, TOPIC, "meta_gibbs: learned block proposals", summary, body)


def _equal_time(curves: list) -> dict:
    """Per family, every method's marginal error at meta_gibbs's final sampling time T (interpolated on its curve;
    a method that finished earlier keeps its final value, one whose first point is later takes that point)."""
    out = {}
    finals = {family: times[-1] for family, method, times, _ in curves if method == "meta_gibbs"}
    for family, method, times, errors in curves:
        if family in finals:
            out.setdefault(family, {})[method] = float(np.interp(finals[family], times, errors))
    return out


def _verdict(grid_rows: list, mixture_rows: list, equal_time: dict, mixture_curves: list) -> str:
    lines = []
    for family in sorted({r[0] for r in grid_rows}, key=[r[0] for r in grid_rows].index):
        results = {r[1]: r for r in grid_rows if r[0] == family}
        at_t = ", ".join(f"{method} {common.fmt(value)}" for method, value in equal_time.get(family, {}).items())
        costs = ", ".join(f"{method} {common.fmt(row[6])} ms" for method, row in results.items())
        meta_time = results["meta_gibbs"][5] if "meta_gibbs" in results else float("nan")
        lines.append(
            f"- {family}: error at meta_gibbs's final time ({common.fmt(meta_time)} s): {at_t}; cost per sweep {costs}."
        )
    ratios = [
        r["block_gibbs"][6] / r["meta_gibbs"][6]
        for r in ({row[1]: row for row in grid_rows if row[0] == f} for f in {row[0] for row in grid_rows})
        if "block_gibbs" in r and "meta_gibbs" in r
    ]
    if ratios:
        lines.append(
            f"- A learned block move costs {common.fmt(min(ratios))}-{common.fmt(max(ratios))}x less than exact "
            "enumeration of the 512 states of a 3 x 3 binary block (both vectorised over the blocks of a "
            "colour class). On blocks this small enumeration is cheap, so the learned proposal's edge over "
            "exact block Gibbs is small; enumeration doubles with every extra binary node, the network does "
            "not. Both block samplers beat single-site Gibbs, which stays where the deterministic rows pin "
            "it (the paper reports the same plateau, 0.26 for Gibbs against 0.18 for the learned proposal "
            "on one UAI grid)."
        )
    for size in sorted({r[0] for r in mixture_rows}, key=[r[0] for r in mixture_rows].index):
        results = {r[1]: r for r in mixture_rows if r[0] == size}
        meta, gibbs = results["meta_gibbs"], results["gibbs"]
        curves = {
            method: (times, values) for panel, method, times, values in mixture_curves if panel == f"(m, n) = {size}"
        }
        horizon = min(curves["gibbs"][0][-1], curves["meta_gibbs"][0][-1])
        at = {method: float(np.interp(horizon, *curves[method])) for method in curves}
        lines.append(
            f"- mixture {size}: at equal time ({common.fmt(horizon)} s) log-likelihood meta_gibbs "
            f"{common.fmt(at['meta_gibbs'])} vs gibbs {common.fmt(at['gibbs'])}; the learned move is "
            f"accepted in {common.fmt(100 * (meta[7] or 0.0))} % of the pair updates."
        )
        lines.append(
            f"- mixture {size}: log-likelihood after one sweep meta_gibbs {common.fmt(meta[2])} vs gibbs "
            f"{common.fmt(gibbs[2])}, after a quarter of the run {common.fmt(meta[3])} vs "
            f"{common.fmt(gibbs[3])}, at the end {common.fmt(meta[4])} vs {common.fmt(gibbs[4])} (true "
            f"means: {common.fmt(meta[8])}); final M meta_gibbs {common.fmt(meta[6])}, gibbs "
            f"{common.fmt(gibbs[6])}, true {meta[11]}."
        )
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    common.topic_cli(main, __doc__)
