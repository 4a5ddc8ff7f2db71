"""Controlled Monte Carlo Diffusions (CMCD): learned Langevin annealing with importance weights and log-evidence.

F. Vargas, S. Padhy, D. Blessing, N. Nüsken, "Transport meets Variational Inference: Controlled Monte Carlo
Diffusions", ICLR 2024 (arXiv 2307.01050). First-order (overdamped) discretisation, as in the authors' ``mcd_cais``
code. MCD (Doucet et al. 2022, "Score-based diffusion meets annealed importance sampling"; Geffner and Domke 2023)
and uncorrected Langevin annealing (ULA; Thin et al. 2021) are special cases of the same code.

Path. From a diagonal Gaussian reference ``q0 = N(m, diag(s^2))`` to the unnormalised target ``gamma`` (``Z`` its
normalising constant), K intermediate densities on the geometric path

    log pi_k(y) = beta_k log gamma(y) + (1 - beta_k) log q0(y),          k = 1..K,
    beta_k = c_k / c_{K+1},   c_k = sum_{j <= k} softplus(w_j),   w in R^{K+1}

(monotone by construction; ``w = 0`` gives ``beta_k = k / (K + 1)``).

Kernels. Step k = 1..K moves ``y_{k-1} -> y_k`` with step size ``eps_k`` and control network ``u(y, k)``:

    F_k(y_k | y_{k-1}) = N(y_k;     y_{k-1} + eps_k grad log pi_k(y_{k-1}) - eps_k u(y_{k-1}, k - 1), 2 eps_k I)
    B_k(y_{k-1} | y_k) = N(y_{k-1}; y_k     + eps_k grad log pi_k(y_k)     + eps_k u(y_k, k),         2 eps_k I)

(the network is evaluated at indices 0..K). Step sizes: ``eps_k = eps`` (constant) or
``eps_k = eps cos^2(((k - 1)/K + s)/(1 + s) pi/2)``, ``s = 0.008`` (cosine; evaluated at the step's start time
(k - 1)/K so that no step vanishes), ``eps`` learnable and clipped to [1e-7, 0.5].

Weight. With ``y_0 ~ q0`` and ``y_k ~ F_k(. | y_{k-1})``:

    log w = log gamma(y_K) - log q0(y_0) + sum_{k=1..K} [log B_k(y_{k-1} | y_k) - log F_k(y_k | y_{k-1})],

so ``E[w] = Z`` for any control (Jarzynski/Crooks): ``ELBO = E[log w] <= log Z`` and ``log Z-hat = logmeanexp(log w)``
(biased low at finite n). At the optimal control the forward marginals are the ``pi_k`` and ``Var(log w) = 0``.

Variants (``variant``): ``"cmcd"`` (u in both kernels), ``"mcd"`` (forward control 0, learned backward network),
``"ula"`` (u = 0: uncorrected Langevin annealing; CMCD at initialisation, since the network's output scale starts
at 0).

Objectives. ``"kl"``: ``-mean(log w)``, reparameterised through the whole trajectory (backpropagates through K
target gradients per sample; ``recompute_steps`` wraps each step in ``jax.checkpoint`` so the backward pass stores
only the per-step carries). ``"logvar"``: the batch variance of ``log w`` with the states detached at each step
(no second derivatives of the target; better on multimodal targets; needs batches of 2 or more).

Control network (the authors' default): input ``[y, e_k]`` with ``e_k`` a learned per-step embedding (K+1 rows,
initialised N(0, 0.05^2)) or sinusoidal features of ``k / K``; residual blocks ``h <- h + softplus(W h + b)``; a
final dense layer to R^d; the output multiplied by a learnable scalar initialised at 0.

Usage:

    algorithm = cmcd(logdensity_fn, dim=10, num_steps=32)
    params = algorithm.init_params(jax.random.key(0))
    params, curve = train(jax.random.key(1), algorithm, params, num_iterations=1000, batch_size=256)
    positions, log_weights = algorithm.sample(jax.random.key(2), params, 2000)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

__all__ = [
    "VARIANTS",
    "OBJECTIVES",
    "STEP_SCHEDULES",
    "TIME_EMBEDDINGS",
    "CMCDState",
    "CMCDInfo",
    "CMCDAlgorithm",
    "TrainingInfo",
    "cmcd",
    "init_control",
    "apply_control",
    "gaussian_reference",
    "train",
    "fit_reference",
    "tune_step_size",
    "scan_in_pieces",
    "log_evidence",
    "elbo",
]

VARIANTS = ("cmcd", "mcd", "ula")
OBJECTIVES = ("kl", "logvar")
STEP_SCHEDULES = ("constant", "cosine")
TIME_EMBEDDINGS = ("learned", "sinusoidal")

MIN_STEP_SIZE = 1e-7
MAX_STEP_SIZE = 0.5
COSINE_OFFSET = 0.008
EMBEDDING_INIT_SD = 0.05
LOSS_GROUP = 16  # trajectories vmapped together in the training loss (see `loss`)


class CMCDState(NamedTuple):
    """The annealing particle after ``step`` of K steps.

    ``logdensity`` and ``logdensity_grad`` are log gamma and its gradient at ``position``: computed once per step
    and reused by the next forward kernel, so a full trajectory costs K + 1 target gradients. ``log_weight`` is the
    running ``-log q0(y_0) + sum_{j <= step} [log B_j - log F_j]``; the final importance weight adds
    ``logdensity`` (see `final_log_weight`).
    """

    position: jax.Array
    logdensity: jax.Array
    logdensity_grad: jax.Array
    log_weight: jax.Array
    step: jax.Array


class CMCDInfo(NamedTuple):
    """Per-step record: the weight increment ``log B_k - log F_k``, the step size ``eps_k`` and ``beta_k``."""

    log_increment: jax.Array
    step_size: jax.Array
    beta: jax.Array


class CMCDAlgorithm(NamedTuple):
    """The functions `cmcd` builds (all pure; jit and vmap them freely).

    init_params(key, reference=None) -> params      (a dict pytree: reference, schedule, log_step_size, control)
    init(key, params) -> CMCDState                  (y_0 ~ q0)
    step(key, state, params) -> (CMCDState, CMCDInfo)
    final_log_weight(state) -> log w                (after K steps)
    trajectory(key, params) -> (path (K+1, d), log w)
    sample(key, params, num_samples) -> (positions (n, d), log_weights (n,))
    path_log_density(params, path) -> log q0(y_0) + sum_k log F_k(y_k | y_{k-1})   (exact, on path space)
    loss(params, key, batch_size, objective) -> (loss, {"elbo", "log_evidence", "finite_fraction"})
    betas(params) -> (K,);  step_sizes(params) -> (K,)
    """

    init_params: Callable
    init: Callable
    step: Callable
    final_log_weight: Callable
    trajectory: Callable
    sample: Callable
    path_log_density: Callable
    loss: Callable
    betas: Callable
    step_sizes: Callable
    dim: int
    num_steps: int
    variant: str


class TrainingInfo(NamedTuple):
    """Per training iteration: the objective, and the batch's ELBO and log Z-hat."""

    loss: jax.Array
    elbo: jax.Array
    log_evidence: jax.Array


# ---------------------------------------------------------------------------------------------------------------------
# the builder
def cmcd(
    logdensity_fn: Callable,
    dim: int,
    num_steps: int,
    *,
    variant: str = "cmcd",
    step_schedule: str = "constant",
    time_embedding: str = "learned",
    embedding_dim: int = 20,
    num_blocks: int = 2,
    initial_step_size: float = 0.1,
    score_clip: float | None = None,
    recompute_steps: bool = True,
) -> CMCDAlgorithm:
    """Build first-order CMCD (or MCD / ULA annealing) for ``logdensity_fn`` (log gamma on R^dim).

    Args:
        logdensity_fn: unnormalised log target on a flat vector of length ``dim``; may return -inf (its gradient is
            then taken as 0).
        dim: the dimension of the flat vector.
        num_steps: K, the number of annealing steps (K + 1 target gradients per draw).
        variant: "cmcd", "mcd" (backward network only) or "ula" (no control).
        step_schedule: "constant" or "cosine".
        time_embedding: "learned" (a (K+1, embedding_dim) table) or "sinusoidal" (features of k / K).
        embedding_dim: the width of the time embedding e_k fed to the control u(y, k).
        num_blocks: residual softplus blocks of the control network u(y, k).
        initial_step_size: eps at initialisation, in [1e-7, 0.5].
        score_clip: clip each coordinate of grad log gamma to +-score_clip (None: no clipping).
        recompute_steps: wrap each step in ``jax.checkpoint`` (memory of the KL gradient O(K d) per draw).
    """
    _check_builder(
        dim, num_steps, variant, step_schedule, time_embedding, embedding_dim, num_blocks, initial_step_size, score_clip
    )
    value_and_grad = _safe_value_and_grad(logdensity_fn, score_clip)
    has_control = variant != "ula"
    forward_control = variant == "cmcd"

    def init_params(key, reference: dict | None = None) -> dict:
        reference = gaussian_reference(dim) if reference is None else dict(reference)
        dtype = reference["mean"].dtype
        params = {
            "reference": reference,
            "schedule": jnp.zeros(num_steps + 1, dtype),
            "log_step_size": jnp.asarray(math.log(initial_step_size), dtype),
        }
        if has_control:
            params["control"] = init_control(
                key,
                dim,
                num_steps,
                embedding=time_embedding,
                embedding_dim=embedding_dim,
                num_blocks=num_blocks,
                dtype=dtype,
            )
        return params

    def betas(params):
        return _betas(params["schedule"])

    def step_sizes(params):
        return _step_sizes(params["log_step_size"], num_steps, step_schedule)

    def control(params, y, index):
        if not has_control:
            return jnp.zeros_like(y)
        return apply_control(params["control"], y, index, num_steps)

    def _init(key, params, detach):
        reference = params["reference"]
        noise = jax.random.normal(key, (dim,), reference["mean"].dtype)
        position = reference["mean"] + jnp.exp(reference["log_scale"]) * noise
        if detach:
            position = jax.lax.stop_gradient(position)
            log_q0 = _gaussian_logpdf(position, reference["mean"], reference["log_scale"])
        else:  # reparameterised: (y - m) / s = noise exactly
            log_q0 = _standard_logpdf(noise) - jnp.sum(reference["log_scale"])
        logdensity, grad = _evaluate(value_and_grad, position, detach)
        return CMCDState(position, logdensity, grad, -log_q0, jnp.zeros((), jnp.int32))

    def _step(key, state, params, detach):
        index = state.step + 1  # k: this step moves y_{k-1} -> y_k
        beta = betas(params)[index - 1]
        eps = step_sizes(params)[index - 1]
        reference = params["reference"]
        y_prev = state.position
        score_prev = beta * state.logdensity_grad + (1.0 - beta) * _reference_score(y_prev, reference)
        forward_u = control(params, y_prev, index - 1) if forward_control else jnp.zeros_like(y_prev)
        forward_mean = y_prev + eps * score_prev - eps * forward_u
        noise = jax.random.normal(key, (dim,), y_prev.dtype)
        y_new = forward_mean + jnp.sqrt(2.0 * eps) * noise
        if detach:
            y_new = jax.lax.stop_gradient(y_new)
            log_forward = _isotropic_logpdf(y_new, forward_mean, eps)
        else:  # reparameterised: (y_k - mean) / sqrt(2 eps) = noise exactly
            log_forward = _standard_logpdf(noise) - 0.5 * dim * jnp.log(2.0 * eps)
        logdensity, grad = _evaluate(value_and_grad, y_new, detach)
        score_new = beta * grad + (1.0 - beta) * _reference_score(y_new, reference)
        backward_mean = y_new + eps * score_new + eps * control(params, y_new, index)
        log_backward = _isotropic_logpdf(y_prev, backward_mean, eps)
        increment = log_backward - log_forward
        new_state = CMCDState(y_new, logdensity, grad, state.log_weight + increment, index)
        return new_state, CMCDInfo(increment, eps, beta)

    def init(key, params) -> CMCDState:
        return _init(key, params, False)

    def step(key, state: CMCDState, params) -> tuple[CMCDState, CMCDInfo]:
        return _step(key, state, params, False)

    def final_log_weight(state: CMCDState):
        return state.log_weight + state.logdensity

    def _run(key, params, detach, keep_path):
        state = _init(jax.random.fold_in(key, 0), params, detach)

        def body(state, index):
            new_state, _ = _step(jax.random.fold_in(key, index), state, params, detach)
            return new_state, (new_state.position if keep_path else None)

        if recompute_steps:
            body = jax.checkpoint(body)
        start = state.position
        state, path = jax.lax.scan(body, state, jnp.arange(1, num_steps + 1))
        if keep_path:
            path = jnp.concatenate([start[None], path], axis=0)
        return state, path

    def trajectory(key, params):
        state, path = _run(key, params, False, True)
        return path, final_log_weight(state)

    def sample(key, params, num_samples: int):
        keys = jax.random.split(key, num_samples)
        states = jax.vmap(lambda k: _run(k, params, False, False)[0])(keys)
        return states.position, final_log_weight(states)

    def path_log_density(params, path):
        path = jnp.asarray(path)
        if path.shape != (num_steps + 1, dim):
            raise ValueError(f"path must have shape (num_steps + 1, dim) = {(num_steps + 1, dim)}, got {path.shape}")
        reference = params["reference"]
        grads = jax.vmap(lambda y: value_and_grad(y)[1])(path[:-1])
        indices = jnp.arange(1, num_steps + 1)

        def log_forward(y_prev, y_new, grad_prev, index):
            beta = betas(params)[index - 1]
            eps = step_sizes(params)[index - 1]
            score = beta * grad_prev + (1.0 - beta) * _reference_score(y_prev, reference)
            u = control(params, y_prev, index - 1) if forward_control else jnp.zeros_like(y_prev)
            return _isotropic_logpdf(y_new, y_prev + eps * score - eps * u, eps)

        terms = jax.vmap(log_forward)(path[:-1], path[1:], grads, indices)
        return _gaussian_logpdf(path[0], reference["mean"], reference["log_scale"]) + jnp.sum(terms)

    def loss(params, key, batch_size: int, objective: str = "kl"):
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {list(OBJECTIVES)}, got {objective!r}")
        detach = objective == "logvar"
        keys = jax.random.split(key, batch_size)
        # the batch runs as a loop over vmapped groups of LOSS_GROUP trajectories: one vmap over 64+ trajectories of
        # a Cholesky-based model makes batches that jaxlib splits on XLA's intra-op pool, which can deadlock on
        # machines with many cores too (docs/reliability.md, "A deadlock in batched linear algebra")
        states = jax.lax.map(lambda k: _run(k, params, detach, False)[0], keys, batch_size=LOSS_GROUP)
        log_w = final_log_weight(states)
        finite = jnp.isfinite(log_w)
        count = jnp.maximum(jnp.sum(finite), 1)
        safe = jnp.where(finite, log_w, 0.0)
        mean = jnp.sum(safe) / count
        if objective == "kl":
            value = -mean
        else:
            value = jnp.sum(jnp.where(finite, (safe - mean) ** 2, 0.0)) / jnp.maximum(count - 1, 1)
        stopped = jax.lax.stop_gradient(log_w)
        aux = {
            "elbo": jax.lax.stop_gradient(mean),
            "log_evidence": log_evidence(stopped),
            "finite_fraction": jnp.mean(finite),
        }
        return value, aux

    return CMCDAlgorithm(
        init_params,
        init,
        step,
        final_log_weight,
        trajectory,
        sample,
        path_log_density,
        loss,
        betas,
        step_sizes,
        dim,
        num_steps,
        variant,
    )


# ---------------------------------------------------------------------------------------------------------------------
# training
def train(
    key,
    algorithm: CMCDAlgorithm,
    params: dict,
    *,
    num_iterations: int,
    batch_size: int,
    learning_rate: float = 1e-3,
    objective: str = "kl",
    trainable: tuple[str, ...] = ("reference", "schedule", "log_step_size", "control"),
    gradient_clip: float = 5.0,
    timings: dict | None = None,
    piece_length: int | None = None,
    report: Callable[[int], None] | None = None,
) -> tuple[dict, TrainingInfo]:
    """Minimise ``objective`` with optax: elementwise gradient clipping at ``gradient_clip``, then Adam.

    Only the top-level entries of ``params`` named in ``trainable`` move; an update whose gradient is not finite is
    skipped (``optax.apply_if_finite``). Runs as compiled ``lax.scan`` pieces of ``piece_length`` iterations (None:
    one piece) of one executable; iteration i draws its batch with ``fold_in(key, i)``, so the result does not depend
    on the pieces. ``report(n)`` is called on the host once compiled (n = 0) and after each piece (n = its
    iterations), e.g. to advance a progress bar. Returns the trained params and the per-iteration `TrainingInfo`. A
    ``timings`` dict receives ``compile_s`` and ``run_s`` (wall seconds of compilation and of the iterations).
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {list(OBJECTIVES)}, got {objective!r}")
    if not isinstance(num_iterations, int) or num_iterations < 0:
        raise ValueError(f"num_iterations must be a non-negative integer, got {num_iterations!r}")
    if not isinstance(batch_size, int) or batch_size < (2 if objective == "logvar" else 1):
        raise ValueError(
            f"batch_size must be an integer >= {2 if objective == 'logvar' else 1} for objective "
            f"{objective!r}, got {batch_size!r}; the log-variance loss needs a batch to have a variance"
        )
    if not learning_rate > 0:
        raise ValueError(f"learning_rate must be positive, got {learning_rate!r}")
    unknown = [name for name in trainable if name not in ("reference", "schedule", "log_step_size", "control")]
    if unknown:
        raise ValueError(
            f"trainable names {unknown} are not CMCD parameters; choose from reference, schedule, "
            "log_step_size, control"
        )
    moving = {name: value for name, value in params.items() if name in trainable}
    frozen = {name: value for name, value in params.items() if name not in trainable}
    dtype = params["log_step_size"].dtype
    if num_iterations == 0 or not moving:
        nan = jnp.full((num_iterations,), jnp.nan, dtype)
        return params, TrainingInfo(nan, nan, nan)
    optimizer = optax.apply_if_finite(
        optax.chain(optax.clip(gradient_clip), optax.adam(learning_rate)), max_consecutive_errors=50
    )

    def objective_fn(moving, key):
        return algorithm.loss({**frozen, **moving}, key, batch_size, objective)

    def iteration(carry, index):
        moving, opt_state = carry
        (value, aux), grads = jax.value_and_grad(objective_fn, has_aux=True)(moving, jax.random.fold_in(key, index))
        updates, opt_state = optimizer.update(grads, opt_state, moving)
        moving = optax.apply_updates(moving, updates)
        return (moving, opt_state), TrainingInfo(value, aux["elbo"], aux["log_evidence"])

    (moving, _), info = scan_in_pieces(
        iteration, (moving, optimizer.init(moving)), num_iterations, piece_length, report, timings
    )
    return {**frozen, **moving}, info


def fit_reference(
    key,
    logdensity_fn: Callable,
    dim: int,
    *,
    num_iterations: int = 500,
    batch_size: int = 64,
    learning_rate: float = 1e-2,
    dtype=jnp.float32,
    score_clip: float | None = None,
    piece_length: int | None = None,
    report: Callable[[int], None] | None = None,
) -> tuple[dict, jax.Array]:
    """A mean-field Gaussian q0 fitted by the reparameterised ELBO (Adam), from N(0, I).

    Returns ``({"mean", "log_scale"}, elbo per iteration)``. Costs one target gradient per draw per iteration.
    ``piece_length`` and ``report`` cut the iterations into compiled pieces as in `train` (same result).
    """
    if not isinstance(num_iterations, int) or num_iterations < 0:
        raise ValueError(f"num_iterations must be a non-negative integer, got {num_iterations!r}")
    value_and_grad = _safe_value_and_grad(logdensity_fn, score_clip)
    reference = gaussian_reference(dim, dtype)
    if num_iterations == 0:
        return reference, jnp.zeros((0,), dtype)

    @jax.custom_vjp
    def target(y):
        return value_and_grad(y)[0]

    target.defvjp(lambda y: value_and_grad(y), lambda grad, g: (g * grad,))

    def negative_elbo(reference, key):
        noise = jax.random.normal(key, (batch_size, dim), dtype)
        y = reference["mean"] + jnp.exp(reference["log_scale"]) * noise
        values = jax.vmap(target)(y)
        values = jnp.where(jnp.isfinite(values), values, jnp.finfo(dtype).min / 1e6)
        entropy = jnp.sum(reference["log_scale"])
        return -(jnp.mean(values) + entropy)

    optimizer = optax.apply_if_finite(
        optax.chain(optax.clip(5.0), optax.adam(learning_rate)), max_consecutive_errors=50
    )

    def iteration(carry, index):
        reference, opt_state = carry
        value, grads = jax.value_and_grad(negative_elbo)(reference, jax.random.fold_in(key, index))
        updates, opt_state = optimizer.update(grads, opt_state, reference)
        return (optax.apply_updates(reference, updates), opt_state), -value

    (reference, _), curve = scan_in_pieces(
        iteration, (reference, optimizer.init(reference)), num_iterations, piece_length, report
    )
    # the ELBO's constant: E log q0 = -d/2 log(2 pi e) - sum log s was dropped above (entropy up to a constant)
    return reference, curve + 0.5 * dim * math.log(2.0 * math.pi * math.e)


def tune_step_size(
    key, algorithm: CMCDAlgorithm, params: dict, *, batch_size: int = 128, grid: jax.Array | None = None
) -> jax.Array:
    """The log step size on ``grid`` (default: 16 values from 1e-4 to 0.5, log-spaced) with the highest ELBO.

    Each grid point is scored by the mean log-weight of ``batch_size`` trajectories, with the same random numbers at
    every grid point (common random numbers). Costs len(grid) x batch_size x (K + 1) target gradients; no training.
    When every point of the default grid diverges (a posterior far narrower than 1e-2 in some coordinate, e.g. a
    regression on covariates of scale 1e2-1e3), 8 smaller values down to MIN_STEP_SIZE are scored too.
    """
    dtype = params["log_step_size"].dtype
    default = grid is None
    grid = jnp.geomspace(1e-4, MAX_STEP_SIZE, 16).astype(dtype) if default else jnp.asarray(grid, dtype)
    if grid.ndim != 1 or grid.size == 0 or bool(jnp.any(grid <= 0)):
        raise ValueError("grid must be a non-empty 1-D array of positive step sizes")
    best, finite = _best_on_grid(key, algorithm, params, batch_size, grid)
    if default and not finite:
        best, _ = _best_on_grid(
            key, algorithm, params, batch_size, jnp.geomspace(MIN_STEP_SIZE, 1e-4, 9)[:-1].astype(dtype)
        )
    return best


def _best_on_grid(key, algorithm, params, batch_size, grid) -> tuple[jax.Array, bool]:
    """The best log step size on ``grid`` and whether any point's score was finite."""

    @jax.jit
    def score(log_step):
        log_w = algorithm.sample(key, {**params, "log_step_size": log_step}, batch_size)[1]
        return jnp.mean(jnp.where(jnp.isfinite(log_w), log_w, -jnp.inf))

    scores = jax.lax.map(score, jnp.log(grid))
    scores = jnp.where(jnp.isnan(scores), -jnp.inf, scores)
    return jnp.log(grid)[jnp.argmax(scores)], bool(jnp.any(jnp.isfinite(scores)))


def scan_in_pieces(
    iteration: Callable,
    carry,
    num_iterations: int,
    piece_length: int | None = None,
    report: Callable[[int], None] | None = None,
    timings: dict | None = None,
):
    """``lax.scan(iteration, carry, arange(num_iterations))`` run as compiled pieces of ``piece_length`` steps.

    One executable (compiled ahead of time) serves every piece: it takes the piece's first index, and the steps
    past ``num_iterations`` in the last piece are skipped by a ``lax.cond`` (also present with one piece, so that
    every cut runs the same arithmetic: the result does not depend on ``piece_length``). ``iteration(carry, index)``
    must take its randomness from the global ``index`` (e.g. ``fold_in(key, index)``). Between pieces the host calls
    ``report(steps)`` (0 once compiled); ``timings`` receives ``compile_s`` and ``run_s``. Returns ``(carry, ys)``
    with ``ys`` stacked over the ``num_iterations`` steps.
    """
    _, y_shape = jax.eval_shape(iteration, carry, jnp.asarray(0))
    if num_iterations <= 0:
        return carry, jax.tree.map(lambda leaf: jnp.zeros((0,) + leaf.shape, leaf.dtype), y_shape)
    length = num_iterations if piece_length is None else max(1, min(int(piece_length), num_iterations))

    def skip(carry, index):
        return carry, jax.tree.map(lambda leaf: jnp.zeros(leaf.shape, leaf.dtype), y_shape)

    def piece(carry, first):
        def body(carry, offset):
            index = first + offset
            return jax.lax.cond(index < num_iterations, iteration, skip, carry, index)

        return jax.lax.scan(body, carry, jnp.arange(length))

    start = time.perf_counter()
    compiled = jax.jit(piece).lower(carry, jnp.asarray(0)).compile()
    middle = time.perf_counter()
    if report is not None:
        report(0)
    outputs = []
    for first in range(0, num_iterations, length):
        carry, ys = compiled(carry, jnp.asarray(first))
        if report is not None:
            jax.block_until_ready(carry)
            report(min(length, num_iterations - first))
        outputs.append(ys)
    carry = jax.block_until_ready(carry)
    if timings is not None:
        timings["compile_s"] = middle - start
        timings["run_s"] = time.perf_counter() - middle
    ys = jax.tree.map(lambda *parts: jnp.concatenate(parts)[:num_iterations], *outputs)
    return carry, ys


# ---------------------------------------------------------------------------------------------------------------------
# estimates
def log_evidence(log_weights, axis=-1):
    """The log-evidence estimate log Z-hat = logsumexp(log w) - log n (non-finite weights count as 0; biased low at finite n)."""
    log_weights = jnp.asarray(log_weights)
    n = log_weights.shape[axis]
    finite = jnp.where(jnp.isnan(log_weights), -jnp.inf, log_weights)
    return jax.nn.logsumexp(finite, axis=axis) - math.log(n)


def elbo(log_weights, axis=-1):
    """The ELBO estimate mean(log w) (a lower bound on log Z in expectation)."""
    return jnp.mean(jnp.asarray(log_weights), axis=axis)


# ---------------------------------------------------------------------------------------------------------------------
# the control network
def init_control(
    key,
    dim: int,
    num_steps: int,
    *,
    embedding: str = "learned",
    embedding_dim: int = 20,
    num_blocks: int = 2,
    dtype=jnp.float32,
) -> dict:
    """Parameters of u(y, k): input [y, e_k], ``num_blocks`` residual softplus blocks, dense output times a scale 0."""
    if embedding not in TIME_EMBEDDINGS:
        raise ValueError(f"embedding must be one of {list(TIME_EMBEDDINGS)}, got {embedding!r}")
    width = dim + embedding_dim
    keys = jax.random.split(key, num_blocks + 2)
    params = {
        "blocks": {
            "weight": jnp.stack([_lecun_normal(keys[i], (width, width), dtype) for i in range(num_blocks)]),
            "bias": jnp.zeros((num_blocks, width), dtype),
        },
        "output": {"weight": _lecun_normal(keys[num_blocks], (width, dim), dtype), "bias": jnp.zeros(dim, dtype)},
        "scale": jnp.zeros((), dtype),
    }
    if embedding == "learned":
        params["embedding"] = EMBEDDING_INIT_SD * jax.random.normal(keys[-1], (num_steps + 1, embedding_dim), dtype)
    return params


def apply_control(params: dict, y, index, num_steps: int):
    """u(y, k) for one position ``y`` (d,) and step index ``k`` in 0..K.

    A learned table ``params["embedding"]`` gives e_k; without one, e_k are sinusoidal features of k / K (their
    number is the network's width minus d).
    """
    if "embedding" in params:
        features = params["embedding"][index]
    else:
        size = params["output"]["weight"].shape[0] - y.shape[-1]
        features = _sinusoidal_features(index / num_steps, size, y.dtype)
    h = jnp.concatenate([y, features])
    blocks = params["blocks"]
    for i in range(blocks["weight"].shape[0]):
        h = h + jax.nn.softplus(h @ blocks["weight"][i] + blocks["bias"][i])
    return params["scale"] * (h @ params["output"]["weight"] + params["output"]["bias"])


def gaussian_reference(dim: int, dtype=jnp.float32) -> dict:
    """q0 = N(0, I): ``{"mean": zeros(dim), "log_scale": zeros(dim)}``."""
    return {"mean": jnp.zeros(dim, dtype), "log_scale": jnp.zeros(dim, dtype)}


# ---------------------------------------------------------------------------------------------------------------------
# helpers
def _betas(weights):
    cumulative = jnp.cumsum(jax.nn.softplus(weights))
    return (cumulative / cumulative[-1])[:-1]


def _step_sizes(log_step_size, num_steps, schedule):
    eps = jnp.clip(jnp.exp(log_step_size), MIN_STEP_SIZE, MAX_STEP_SIZE)
    if schedule == "constant":
        return jnp.full((num_steps,), 1.0, eps.dtype) * eps
    start_times = jnp.arange(num_steps, dtype=eps.dtype) / num_steps  # (k - 1) / K
    shape = jnp.cos((start_times + COSINE_OFFSET) / (1.0 + COSINE_OFFSET) * (jnp.pi / 2.0)) ** 2
    return jnp.clip(eps * shape, MIN_STEP_SIZE, MAX_STEP_SIZE)


def _sinusoidal_features(time, size, dtype):
    """[sin(2^j pi t), cos(2^j pi t)], j = 0, 1, ..., truncated to ``size`` features."""
    half = (size + 1) // 2
    angles = jnp.pi * 2.0 ** jnp.arange(half, dtype=dtype) * jnp.asarray(time, dtype)
    return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)])[:size]


def _lecun_normal(key, shape, dtype):
    return jax.random.normal(key, shape, dtype) / math.sqrt(shape[0])


def _reference_score(y, reference):
    return -(y - reference["mean"]) * jnp.exp(-2.0 * reference["log_scale"])


def _standard_logpdf(noise):
    return -0.5 * jnp.sum(noise**2) - 0.5 * noise.shape[-1] * math.log(2.0 * math.pi)


def _gaussian_logpdf(y, mean, log_scale):
    return _standard_logpdf((y - mean) * jnp.exp(-log_scale)) - jnp.sum(log_scale)


def _isotropic_logpdf(y, mean, eps):
    """The log density log N(y; mean, 2 eps I)."""
    return -0.25 * jnp.sum((y - mean) ** 2) / eps - 0.5 * y.shape[-1] * jnp.log(4.0 * math.pi * eps)


def _safe_value_and_grad(logdensity_fn, score_clip):
    """Return log gamma and its gradient, with NaN values read as -inf and non-finite gradient entries as 0 (then clipped)."""
    value_and_grad = jax.value_and_grad(logdensity_fn)

    def fn(y):
        value, grad = value_and_grad(y)
        value = jnp.where(jnp.isnan(value), -jnp.inf, value)
        grad = jnp.where(jnp.isfinite(grad), grad, 0.0)
        if score_clip is not None:
            grad = jnp.clip(grad, -score_clip, score_clip)
        return value, grad

    return fn


def _evaluate(value_and_grad, position, detach):
    if detach:
        return jax.lax.stop_gradient(value_and_grad(position))
    return value_and_grad(position)


def _check_builder(
    dim, num_steps, variant, step_schedule, time_embedding, embedding_dim, num_blocks, initial_step_size, score_clip
):
    if not isinstance(dim, int) or dim < 1:
        raise ValueError(f"dim must be a positive integer, got {dim!r}")
    if not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive integer (K annealing steps), got {num_steps!r}")
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {list(VARIANTS)}, got {variant!r}")
    if step_schedule not in STEP_SCHEDULES:
        raise ValueError(f"step_schedule must be one of {list(STEP_SCHEDULES)}, got {step_schedule!r}")
    if time_embedding not in TIME_EMBEDDINGS:
        raise ValueError(f"time_embedding must be one of {list(TIME_EMBEDDINGS)}, got {time_embedding!r}")
    if not isinstance(embedding_dim, int) or embedding_dim < 1:
        raise ValueError(f"embedding_dim must be a positive integer, got {embedding_dim!r}")
    if not isinstance(num_blocks, int) or num_blocks < 0:
        raise ValueError(f"num_blocks must be a non-negative integer, got {num_blocks!r}")
    if not MIN_STEP_SIZE <= initial_step_size <= MAX_STEP_SIZE:
        raise ValueError(f"initial_step_size must lie in [{MIN_STEP_SIZE}, {MAX_STEP_SIZE}], got {initial_step_size!r}")
    if score_clip is not None and not score_clip > 0:
        raise ValueError(f"score_clip must be positive or None, got {score_clip!r}")
