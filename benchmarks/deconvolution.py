"""Bayesian image deconvolution with a total-variation prior: myula vs nuts vs mala at equal wall time.

The problem (Durmus, Moulines and Pereyra 2018, section 4.1, at a size a 2-core machine can run): a 64 x 64 grayscale
image (matplotlib's sample ``grace_hopper.jpg``, cropped square and block-averaged in NumPy, values in [0, 1]) is
blurred by a normalised 5 x 5 Gaussian kernel (sd 1 pixel, zero boundary) and Gaussian noise of sd 0.02 is added. The
posterior is

    p(x | y) ∝ exp(-|y - H x|^2 / (2 sigma^2) - theta TV(x)),   theta = 20,

written in NumPyro as a user would: a flat image site and ``numpyro.factor("tv", -theta * total_variation(x))``; myula
is told about the TV term with ``total_variation={"site": "x", "weight": theta, "factor": "tv"}`` and handles it by
its proximity operator, with smoothing lambda = sigma^2 = 1 / L (Durmus, Moulines and Pereyra's choice); nuts and mala see the same density (TV's kinks included) through its gradient.

Equal wall time: nuts runs first; its warm-up plus sampling seconds are the budget. Every other method first runs a
short pilot to measure its seconds per step, then gets as many steps (20 % warm-up, at least 200) as fit in the budget
(run once more at its own measured speed when it missed the budget by more than 25 %).
All methods run in the same process, one after the other, so each row's time is measured under the same machine load.
Errors are against a long reference chain (mala: Metropolis-adjusted, so it targets the exact posterior, and the
cheapest exact step here; its own Monte Carlo error is stated): the posterior-mean (MMSE) error is the root mean square over pixels
of |mean - reference mean| / reference sd, the interval error the same for the 5 % and 95 % quantiles (pixel-wise 90 %
credible intervals). The reference's summaries are cached in the temporary folder (``samplax_benchmarks/``).
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.distributions import constraints

from benchmarks import common
from samplax.kernels.bregman.total_variation import total_variation

__all__ = ["FULL", "QUICK", "deblur_model", "main", "make_problem"]

TOPIC = "deconvolution"
CACHE = Path(tempfile.gettempdir()) / "samplax_benchmarks"  # the reference chain's summaries, outside the repository
FULL = dict(
    size=64,
    blur_sd=1.0,
    noise_sd=0.02,
    theta=20.0,
    chains=2,
    nuts_warmup=200,
    nuts_draws=100,
    reference_warmup=5000,
    reference_draws=100000,
    reference_thin=200,
    kept_draws=500,
    seed=0,
)
QUICK = dict(
    size=16,
    blur_sd=1.0,
    noise_sd=0.02,
    theta=20.0,
    chains=2,
    nuts_warmup=100,
    nuts_draws=100,
    reference_warmup=1000,
    reference_draws=20000,
    reference_thin=40,
    kept_draws=200,
    seed=0,
    rows=("nuts", "myula"),  # the smoke run: one baseline and one proximal row (every other row compiles more)
    timing_rounds=1,  # no second fit when the first misses nuts's time (another compilation; quick times are noise)
)
# (label, method, options); "tv" stands for myula's total_variation declaration and smoothing lambda = 1 / L
ROWS = (
    ("nuts", "nuts", {}),
    ("mala", "mala", {}),
    ("myula", "myula", {"tv": True}),
    ("myula, gamma = lambda / 2", "myula", {"tv": True, "durmus_step": True}),
    ("myula adjusted", "myula", {"tv": True, "adjusted": True}),
)


def method_options(options: dict, s) -> dict:
    """Expand "tv": myula is told about the TV factor, and its smoothing is 1 / L = noise_sd^2 (blur kernel sums to
    1, so |H| <= 1 and L = |H|^2 / sigma^2 <= 1 / sigma^2), the choice of Durmus, Moulines and Pereyra (2018)."""
    options = dict(options)
    if options.pop("tv", False):
        options["total_variation"] = {"site": "x", "weight": s["theta"], "factor": "tv"}
        options["smoothing"] = s["noise_sd"] ** 2
    if options.pop("durmus_step", False):  # the upper end of their gamma in [lambda / 5, lambda / 2]
        options["step_size"] = options["smoothing"] / 2
    return options


def test_image(size: int) -> np.ndarray:
    """matplotlib's grace_hopper.jpg as a size x size grayscale image in [0, 1] (crop square, block mean)."""
    import matplotlib.cbook
    import matplotlib.image

    rgb = matplotlib.image.imread(matplotlib.cbook.get_sample_data("grace_hopper.jpg")).astype(np.float64) / 255.0
    gray = rgb[..., :3] @ np.array([0.299, 0.587, 0.114])
    side = min(gray.shape)
    top, left = (gray.shape[0] - side) // 2, (gray.shape[1] - side) // 2
    square = gray[top : top + side, left : left + side]
    block = side // size
    square = square[: block * size, : block * size]
    return square.reshape(size, block, size, block).mean(axis=(1, 3))


def blur_kernel(sd: float, radius: int = 2) -> np.ndarray:
    grid = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (grid[:, None] ** 2 + grid[None, :] ** 2) / sd**2)
    return kernel / kernel.sum()


def deblur_model(kernel, theta, noise_sd):
    """The model as a user writes it: a flat image prior times exp(-theta TV(x)), y ~ Normal(blur(x), noise_sd)."""

    def model(y=None):
        x = numpyro.sample("x", dist.ImproperUniform(constraints.real, (), y.shape))
        numpyro.factor("tv", -theta * total_variation(x))
        blurred = jax.scipy.signal.convolve2d(x, kernel, mode="same")
        numpyro.sample("y", dist.Normal(blurred, noise_sd).to_event(2), obs=y)

    return model


def make_problem(s) -> tuple[np.ndarray, dict]:
    truth = test_image(s["size"])
    kernel = blur_kernel(s["blur_sd"])
    blurred = np.asarray(jax.scipy.signal.convolve2d(jnp.asarray(truth), jnp.asarray(kernel), mode="same"))
    rng = np.random.default_rng(s["seed"])
    y = blurred + s["noise_sd"] * rng.normal(size=truth.shape)
    return truth, {"y": y.astype(np.float32)}


def _fit(s, data, method, chains, warmup, steps, seed, options, thin=1):
    """``steps`` transitions per chain after warm-up, every ``thin``-th kept (fit's ``draws`` counts kept draws)."""
    # every chain starts at the observed image, as a practitioner would (random starts cost every method the same)
    model = deblur_model(jnp.asarray(blur_kernel(s["blur_sd"]), jnp.float32), s["theta"], s["noise_sd"])
    return common.quiet_fit(
        model,
        data,
        method=method,
        chains=chains,
        warmup=warmup,
        draws=steps // thin,
        seed=seed,
        thin=thin,
        init={"x": data["y"]},
        log_likelihood=False,
        **options,
    )


def _draws(fit) -> np.ndarray:
    x = np.asarray(fit.idata.posterior["x"].values, dtype=np.float64)
    return x.reshape(-1, x.shape[-2] * x.shape[-1])


def _reference(data, s):
    path = CACHE / f"deconvolution_reference_{s['size']}_{s['seed']}.npz"
    if path.exists():
        with np.load(path) as stored:
            return {k: stored[k] for k in stored.files}
    fit = _fit(
        s,
        data,
        "mala",
        s["chains"],
        s["reference_warmup"],
        s["reference_draws"],
        s["seed"] + 1000,
        {},
        thin=s["reference_thin"],
    )
    x = _draws(fit)
    from samplax.infer import arviz_compat

    ess = np.asarray(arviz_compat.ess(arviz_compat.group(fit.idata, "posterior")[["x"]], method="bulk")["x"].values)
    reference = dict(
        mean=x.mean(0),
        sd=x.std(0),
        q05=np.quantile(x, 0.05, axis=0),
        q95=np.quantile(x, 0.95, axis=0),
        min_ess=np.array(ess.min()),
        median_ess=np.array(np.median(ess)),
        seconds=np.array(fit.timing["warmup_s"] + fit.timing["sampling_s"]),
    )
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(path, **reference)
    return reference


def _psnr(estimate, truth):
    return 10 * np.log10(1.0 / np.mean((estimate - truth.reshape(-1)) ** 2))


def measure(fit, reference, truth, warmup, thin=1) -> dict:
    x = _draws(fit)
    sd = reference["sd"]
    mean_error = np.sqrt(np.mean(((x.mean(0) - reference["mean"]) / sd) ** 2))
    q05, q95 = np.quantile(x, 0.05, axis=0), np.quantile(x, 0.95, axis=0)
    ci_error = np.sqrt(np.mean(((q05 - reference["q05"]) / sd) ** 2 + ((q95 - reference["q95"]) / sd) ** 2) / 2)
    stats = fit.idata.sample_stats
    timing = fit.timing
    return dict(
        mean_error=float(mean_error),
        ci_error=float(ci_error),
        psnr=float(_psnr(x.mean(0), truth)),
        seconds=timing["warmup_s"] + timing["sampling_s"],
        warmup_s=timing["warmup_s"],
        sampling_s=timing["sampling_s"],
        compile_s=timing["compile_s"],
        steps=f"{stats.sizes['chain']} x ({warmup} + {stats.sizes['draw'] * thin})",
        gradients=float(stats["n_steps"].mean()) if "n_steps" in stats else 1.0,
        step_size=float(np.median(stats["step_size"].values)) if "step_size" in stats else float("nan"),
        acceptance=float(stats["acceptance_rate"].mean()) if "acceptance_rate" in stats else float("nan"),
    )


def run(s) -> tuple[list, dict, dict, float]:
    truth, data = make_problem(s)
    reference = _reference(data, s)
    rows, measured = [], {}
    budget = None
    for label, method, options in ROWS:
        if label not in s.get("rows", [label for label, _, _ in ROWS]):
            continue
        options = method_options(options, s)
        if method == "nuts":
            warmup, thin = s["nuts_warmup"], 1
            fit = _fit(s, data, method, s["chains"], warmup, s["nuts_draws"], s["seed"], options)
            budget = fit.timing["warmup_s"] + fit.timing["sampling_s"]
        else:
            pilot = _fit(s, data, method, s["chains"], 100, 400, s["seed"] + 1, options)
            per_step = (pilot.timing["warmup_s"] + pilot.timing["sampling_s"]) / 500
            for _ in range(s.get("timing_rounds", 2)):  # the pilot's speed, then again from the run's own if > 25 % off
                steps = max(500, int(budget / per_step))
                warmup = max(200, steps // 5)
                draws = max(s["kept_draws"], steps - warmup)
                thin = max(1, draws // s["kept_draws"])
                fit = _fit(s, data, method, s["chains"], warmup, draws, s["seed"], options, thin=thin)
                seconds = fit.timing["warmup_s"] + fit.timing["sampling_s"]
                if abs(seconds / budget - 1) <= 0.25:
                    break
                per_step = seconds / (warmup + thin * (draws // thin))
        row = measure(fit, reference, truth, warmup, thin)
        measured[label] = row
        rows.append(
            [
                label,
                row["steps"],
                f"{row['gradients']:.3g}",
                f"{row['seconds']:.1f}",
                f"{row['compile_s']:.0f}",
                common.fmt(row["step_size"]),
                f"{row['acceptance']:.2f}",
                f"{row['mean_error']:.3f}",
                f"{row['ci_error']:.3f}",
                f"{row['psnr']:.1f}",
            ]
        )
    return rows, measured, reference, budget


HEADERS = [
    "method",
    "chains x (warm-up + draws)",
    "gradients / step",
    "seconds (warm-up + sampling)",
    "compile s",
    "step size",
    "acceptance",
    "MMSE error (rms / ref sd)",
    "90 % interval error (rms / ref sd)",
    "PSNR of the mean vs truth (dB)",
]


def main(out_dir: Path, quick: bool = False) -> Path:
    out_dir = Path(out_dir)
    s = QUICK if quick else FULL
    info = common.machine_info()
    start = time.perf_counter()
    with contextlib.nullcontext() if quick else common.persistent_cache_disabled():
        rows, measured, reference, budget = run(s)
    elapsed = time.perf_counter() - start
    truth, data = make_problem(s)
    blurred_psnr = _psnr(data["y"].reshape(-1).astype(np.float64), truth)
    best = min(measured, key=lambda k: measured[k]["mean_error"])
    nuts = measured["nuts"]
    lines = []
    for label in [label for label, method, _ in ROWS if method == "myula" and label in measured]:
        row = measured[label]
        verdict = "lower" if row["mean_error"] < nuts["mean_error"] else "higher"
        lines.append(
            f"{label}: MMSE error {row['mean_error']:.3f} against nuts's {nuts['mean_error']:.3f} "
            f"({verdict}), interval error {row['ci_error']:.3f} against {nuts['ci_error']:.3f}, in "
            f"{row['seconds']:.1f} s against {nuts['seconds']:.1f} s."
        )
    summary = (
        "TV-prior image deconvolution (64 x 64): myula vs nuts vs mala at equal wall time"
        if not quick
        else "TV-prior image deconvolution (quick smoke run)"
    )
    ref_noise = 1.0 / np.sqrt(float(reference["median_ess"]))
    body = f"""
Command: `{common.command_for(TOPIC, quick)}` ({elapsed / 60:.1f} min in all{", quick sizes: the numbers mean little" if quick else ""}).

Problem: {s["size"]} x {s["size"]} grayscale `grace_hopper.jpg` (matplotlib's sample data), 5 x 5 Gaussian blur of sd
{s["blur_sd"]} pixel, noise sd {s["noise_sd"]}, TV weight theta = {s["theta"]}; {s["size"] ** 2} unknowns. The blurred,
noisy image has PSNR {blurred_psnr:.1f} dB against the truth. {s["chains"]} chains per method, float32, seed
{s["seed"]}; every method at its defaults except where the label says otherwise. The budget is nuts's warm-up plus
sampling time (one compiled program: `fit` fuses them without a progress bar) ({budget:.1f} s for {s["nuts_warmup"]} + {s["nuts_draws"]} steps per chain); the other methods get as
many steps as their pilot run says fit in it (compilation excluded everywhere and listed apart). The machine is
shared: the times were measured in the same run, one method after the other, and a load change between rows moves
them.

## Results

{common.markdown_table(HEADERS, rows)}

- {chr(10).join("- " + line for line in lines)[2:]}
- Lowest MMSE error: {best}.

Reference: mala, {s["chains"]} chains x {s["reference_draws"]} steps after {s["reference_warmup"]} warm-up
steps, thinned by {s["reference_thin"]}, seed {s["seed"] + 1000} ({float(reference["seconds"]):.0f} s); smallest /
median bulk ESS over pixels {float(reference["min_ess"]):.0f} / {float(reference["median_ess"]):.0f}, so its own error
of a pixel mean is about {ref_noise:.3f} reference sd (a floor under every row's MMSE error).

Reading the table: the Metropolis-adjusted chains (nuts, mala, adjusted myula) target the exact posterior; plain
myula targets the smoothed posterior (smoothing lambda = sigma^2 = 1 / L) with an Euler step, so its
error has a bias that more steps do not remove. A myula step costs one gradient and one 25-iteration TV prox
(Chambolle's dual projection); nuts spends "gradients / step" gradients per draw.

## Machine

{common.machine_markdown(info)}
"""
    return common.write_page(out_dir, TOPIC, "Deconvolution benchmark", summary, body)


if __name__ == "__main__":  # pragma: no cover
    common.topic_cli(main, __doc__)
