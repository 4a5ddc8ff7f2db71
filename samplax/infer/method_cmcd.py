"""Registers ``cmcd`` and its baselines ``ula``, ``mcd`` and ``ais`` with `samplax.fit`.

All four run the same annealing code (`samplax.kernels.cmcd`): K Langevin steps on the geometric path from a
diagonal-Gaussian reference q0 to the target, with importance weights whose mean is the evidence.

* ``cmcd``: the control network in both kernels, trained with the KL or log-variance objective (plus the beta
  schedule, the step size and q0 unless switched off).
* ``mcd``: the network in the backward kernel only (Monte Carlo diffusions).
* ``ula``: no network; step size, schedule and q0 trained by the same objective (uncorrected Langevin annealing).
* ``ais``: no gradient training at all: the linear schedule beta_k = k / (K + 1), the step size picked on a grid by
  the ELBO (annealed importance sampling with ULA kernels and the reverse-kernel weight, which keeps it unbiased).

Every method costs K + 1 target gradients per draw once trained, so at equal ``num_steps`` they are compared at equal
numbers of gradient evaluations.

In `fit`: ``warmup`` is the number of training iterations, ``chains`` the number of independent evaluation repeats
(their spread gives the standard errors of ``fit.log_evidence`` and ``fit.elbo``), ``draws`` the trajectories per
repeat. The draws are importance-resampled within each repeat; the log-weights before resampling are
``sample_stats["log_weight"]``, the weights' ESS and Pareto k-hat per repeat are ``sample_stats["ess"]`` and
``sample_stats["pareto_k"]`` (constant along the draw axis). The training curve, tuned schedule and timings are in
``idata.attrs["extra_*"]``. ``fit.log_density(path)`` is the exact density of a forward path (K+1, d).
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from samplax.infer import progress
from samplax.infer.diagnostics import importance_diagnostics
from samplax.infer.methods import DirectMethod, DirectResult
from samplax.infer.schema import MethodSchema, Option
from samplax.kernels import cmcd as kernel

__all__ = ["CMCDApproximation", "run_annealing"]

TRAINABLE_BY_METHOD = {
    "cmcd": ("reference", "schedule", "log_step_size", "control"),
    "mcd": ("reference", "schedule", "log_step_size", "control"),
    "ula": ("reference", "schedule", "log_step_size"),
    "ais": (),
}
VARIANT_BY_METHOD = {"cmcd": "cmcd", "mcd": "mcd", "ula": "ula", "ais": "ula"}


class CMCDApproximation:
    """The trained annealing sampler: ``sample(key, n)`` and the exact forward-path density ``log_density(path)``."""

    def __init__(self, algorithm: kernel.CMCDAlgorithm, params: dict):
        self.algorithm = algorithm
        self.params = params

    def sample(self, key, num_samples: int):
        """``(positions (n, d), log_weights (n,))``: unconstrained endpoints y_K and their importance log-weights."""
        return jax.jit(self.algorithm.sample, static_argnums=2)(key, self.params, int(num_samples))

    def log_density(self, path):
        """The forward path density log q0(y_0) + sum_k log F_k(y_k | y_{k-1}) of paths ``(..., K + 1, d)`` (unconstrained)."""
        path = jnp.asarray(path)
        shape = (self.algorithm.num_steps + 1, self.algorithm.dim)
        if path.shape[-2:] != shape:
            raise ValueError(
                f"path must have trailing shape (num_steps + 1, dim) = {shape}, got {path.shape}; "
                "the density is exact on path space only, not for an endpoint alone"
            )
        flat = path.reshape((-1,) + shape)
        values = jax.jit(jax.vmap(lambda p: self.algorithm.path_log_density(self.params, p)))(flat)
        return values.reshape(path.shape[:-2])


def run_annealing(method: str, logdensity_fn, dim: int, options: dict, key, *, num_iterations: int, dtype=jnp.float32):
    """Build, tune and train one annealing method on a flat log density; no evaluation.

    Returns ``(algorithm, params, extra)`` with ``extra`` the JSON-able records (training curve, schedule, step
    sizes, timings, gradient counts). Shared by `fit` and the benchmarks. Under a fit's progress bar
    (`samplax.infer.progress.current`) the reference fit and the training run as a few compiled pieces, each loop
    with its own bar; the result is the same either way.
    """
    bar = progress.current()
    key_reference, key_init, key_tune, key_train = jax.random.split(key, 4)
    num_steps = options["num_steps"]
    batch_size = options["batch_size"]
    objective = options.get("loss", "kl")
    if method != "ais" and objective == "logvar" and batch_size < 2:
        raise ValueError(
            f"method '{method}': loss='logvar' needs batch_size >= 2 (a batch variance), got batch_size={batch_size}"
        )
    extra: dict = {}
    gradients = 0
    start = time.perf_counter()
    if options["reference"] == "vi":
        with bar.loop("reference fit", total=options["reference_steps"]) as loop:
            reference, reference_curve = kernel.fit_reference(
                key_reference,
                logdensity_fn,
                dim,
                num_iterations=options["reference_steps"],
                batch_size=batch_size,
                learning_rate=options.get("reference_learning_rate", 1e-2),
                dtype=dtype,
                score_clip=options["score_clip"],
                piece_length=_piece_length(options["reference_steps"], bar),
                report=loop.advance,
            )
        extra["reference_elbo"] = np.asarray(reference_curve)
        gradients += options["reference_steps"] * batch_size
    else:
        reference = kernel.gaussian_reference(dim, dtype)
    initial = options["step_size"] if options["step_size"] is not None else 0.1
    algorithm = kernel.cmcd(
        logdensity_fn,
        dim,
        num_steps,
        variant=VARIANT_BY_METHOD[method],
        step_schedule=options["step_schedule"],
        time_embedding=options.get("time_embedding", "learned"),
        embedding_dim=options.get("embedding_dim", 20),
        num_blocks=options.get("residual_blocks", 2),
        initial_step_size=initial,
        score_clip=options["score_clip"],
        recompute_steps=options.get("recompute_steps", True),
    )
    params = algorithm.init_params(key_init, reference)
    if options["step_size"] is None:
        with bar.stage("step-size grid"):
            params["log_step_size"] = kernel.tune_step_size(key_tune, algorithm, params, batch_size=batch_size)
        gradients += 16 * batch_size * (num_steps + 1)
    extra["initial_step_size"] = np.asarray(algorithm.step_sizes(params)[0])
    extra["setup_s"] = time.perf_counter() - start

    trainable = TRAINABLE_BY_METHOD[method]
    if method != "ais":
        switched_off = {
            "reference": options["train_reference"],
            "schedule": options["train_schedule"],
            "log_step_size": options["train_step_size"],
        }
        trainable = tuple(name for name in trainable if switched_off.get(name, True))
    timings = {"compile_s": 0.0, "run_s": 0.0}
    trains = bool(trainable) and num_iterations > 0
    if trains:
        with bar.loop("training", total=num_iterations) as loop:
            params, info = kernel.train(
                key_train,
                algorithm,
                params,
                num_iterations=num_iterations,
                batch_size=batch_size,
                learning_rate=options["learning_rate"],
                objective=objective,
                trainable=trainable,
                timings=timings,
                piece_length=_piece_length(num_iterations, bar),
                report=loop.advance,
            )
        gradients += num_iterations * batch_size * (num_steps + 1)
        extra["training_loss"] = np.asarray(info.loss)
        extra["training_elbo"] = np.asarray(info.elbo)
        extra["training_log_evidence"] = np.asarray(info.log_evidence)
    extra["training_s"] = timings["compile_s"] + timings["run_s"]
    extra["training_compile_s"] = timings["compile_s"]
    extra["training_iterations"] = num_iterations if trains else 0
    extra["training_s_per_iteration"] = timings["run_s"] / num_iterations if trains else 0.0
    extra["trained"] = list(trainable) if trains else []
    extra["beta"] = np.asarray(algorithm.betas(params))
    extra["step_size"] = np.asarray(algorithm.step_sizes(params))
    extra["reference_mean"] = np.asarray(params["reference"]["mean"])
    extra["reference_scale"] = np.asarray(jnp.exp(params["reference"]["log_scale"]))
    if "control" in params:
        extra["control_scale"] = np.asarray(params["control"]["scale"])
    extra["gradient_evaluations_per_draw"] = num_steps + 1
    extra["tuning_gradient_evaluations"] = gradients
    return algorithm, params, extra


def _piece_length(num_iterations: int, bar) -> int | None:
    """Iterations per compiled piece: all in one without a bar, else `progress.pieces`' length."""
    plan = progress.pieces(num_iterations, bar)
    return plan[0][1] if plan else None


def _make_run(method: str):
    def run(target, options, key, chains, warmup, draws):
        key_setup, key_eval, key_resample = jax.random.split(key, 3)
        dtype = getattr(target, "dtype", jnp.asarray(0.0).dtype)
        num_iterations = warmup if method != "ais" else 0
        algorithm, params, extra = run_annealing(
            method, target.logdensity, target.dim, options, key_setup, num_iterations=num_iterations, dtype=dtype
        )

        @jax.jit
        def evaluate(keys):
            return jax.lax.map(lambda k: algorithm.sample(k, params, draws), keys)

        start = time.perf_counter()
        with progress.current().stage("evaluating"):
            positions, log_w = jax.block_until_ready(evaluate(jax.random.split(key_eval, chains)))
        extra["evaluation_s"] = time.perf_counter() - start
        log_w = jnp.where(jnp.isnan(log_w), -jnp.inf, log_w)
        bad = np.flatnonzero(~np.isfinite(np.asarray(jnp.max(log_w, axis=1)))).tolist()
        if bad:
            raise ValueError(
                f"method '{method}': every importance weight of repeat(s) {bad} is zero or NaN (the "
                "annealing diverged); pass a smaller step_size or learning_rate, set score_clip, or "
                "use precision='float64'"
            )
        index = jax.vmap(lambda k, lw: jax.random.categorical(k, lw, shape=(draws,)))(
            jax.random.split(key_resample, chains), log_w
        )
        resampled = jnp.take_along_axis(positions, index[..., None], axis=1)
        log_w_host = np.asarray(log_w)
        weights = importance_diagnostics(log_w_host)
        stats = {
            "log_weight": log_w_host,
            "ess": np.broadcast_to(weights["ess_per_repeat"][:, None], (chains, draws)).copy(),
            "pareto_k": np.broadcast_to(weights["pareto_k"][:, None], (chains, draws)).copy(),
            "diverging": ~np.isfinite(log_w_host),
        }
        extra["ess_per_repeat"] = weights["ess_per_repeat"]
        extra["pareto_k"] = weights["pareto_k"]
        return DirectResult(
            np.asarray(resampled),
            stats,
            np.asarray(kernel.log_evidence(log_w)),
            np.asarray(kernel.elbo(log_w)),
            extra,
            CMCDApproximation(algorithm, params),
        )

    return run


# ---------------------------------------------------------------------------------------------------------------------
# schemas
def _common_options(num_steps_default: int) -> tuple[Option, ...]:
    return (
        Option(
            "num_steps",
            int,
            num_steps_default,
            "K, the number of annealing steps (K + 1 target gradients per draw)",
            minimum=1,
        ),
        Option("batch_size", int, 128, "trajectories per training iteration (and per step-size grid point)", minimum=1),
        Option(
            "step_size",
            float,
            None,
            "initial Langevin step size eps in [1e-7, 0.5]; None picks it on a grid by the ELBO",
            minimum=1e-7,
            maximum=0.5,
            allow_none=True,
        ),
        Option("step_schedule", str, "constant", "step sizes along the path", choices=kernel.STEP_SCHEDULES),
        Option(
            "reference",
            str,
            "vi",
            "q0: 'vi' fits a mean-field Gaussian first, 'standard' starts at N(0, I)",
            choices=("vi", "standard"),
        ),
        Option("reference_steps", int, 500, "Adam steps of the mean-field fit when reference='vi'", minimum=0),
        Option(
            "score_clip",
            float,
            None,
            "clip each coordinate of the target's gradient to +-score_clip (for targets whose gradients explode)",
            minimum=1e-12,
            allow_none=True,
        ),
    )


def _training_options() -> tuple[Option, ...]:
    return (
        Option(
            "loss",
            str,
            "kl",
            "'kl' (reparameterised ELBO) or 'logvar' (log-variance, detached states; better "
            "on multimodal targets, needs batch_size >= 2)",
            choices=kernel.OBJECTIVES,
        ),
        Option(
            "learning_rate", float, 3e-3, "Adam learning rate (after elementwise gradient clipping at 5)", minimum=1e-10
        ),
        Option("train_reference", bool, True, "train q0's mean and scales with the objective"),
        Option("train_schedule", bool, True, "train the beta schedule with the objective"),
        Option("train_step_size", bool, True, "train the step size with the objective"),
        Option(
            "recompute_steps",
            bool,
            True,
            "jax.checkpoint each step: the KL gradient's memory stays O(K d) per trajectory",
        ),
    )


def _network_options() -> tuple[Option, ...]:
    return (
        Option(
            "time_embedding",
            str,
            "learned",
            "step input of the control network: a learned table of K + 1 rows or sinusoidal features of k / K",
            choices=kernel.TIME_EMBEDDINGS,
        ),
        Option("embedding_dim", int, 20, "size of the step embedding", minimum=1),
        Option("residual_blocks", int, 2, "residual softplus blocks of the control network", minimum=0),
    )


WEIGHTED = "weighted"
CMCD = DirectMethod(
    MethodSchema(
        "cmcd",
        WEIGHTED,
        "Controlled Monte Carlo Diffusions (Vargas et al. 2024): learned Langevin "
        "annealing with importance weights; gives log-evidence and ELBO; warmup = training iterations, "
        "chains = evaluation repeats, draws = trajectories per repeat",
        _common_options(32) + _training_options() + _network_options(),
    ),
    _make_run("cmcd"),
)
MCD = DirectMethod(
    MethodSchema(
        "mcd",
        WEIGHTED,
        "Monte Carlo Diffusions (Doucet et al. 2022): ULA forward kernels, learned backward network; the cmcd baseline",
        _common_options(32) + _training_options() + _network_options(),
    ),
    _make_run("mcd"),
)
ULA = DirectMethod(
    MethodSchema(
        "ula",
        WEIGHTED,
        "uncorrected Langevin annealing (Thin et al. 2021): cmcd with the control fixed "
        "at 0; step size, schedule and q0 trained",
        _common_options(32) + _training_options(),
    ),
    _make_run("ula"),
)
AIS = DirectMethod(
    MethodSchema(
        "ais",
        WEIGHTED,
        "annealed importance sampling with ULA kernels, linear beta schedule and a "
        "grid-tuned step size; no training (warmup is ignored)",
        _common_options(32),
    ),
    _make_run("ais"),
)

METHODS = (CMCD, MCD, ULA, AIS)
