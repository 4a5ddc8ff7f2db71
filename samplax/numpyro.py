"""samplax kernels as `numpyro.infer.MCMC` kernels, so NumPyro users keep their habits.

    mcmc = numpyro.infer.MCMC(samplax.numpyro.MALA(model), num_warmup=500, num_samples=1000)
    mcmc.run(jax.random.key(0), y=y)
    mcmc.get_samples()          # constrained, through postprocess_fn

NumPyro drives warm-up one step at a time, so adaptation here is online (`baselines.online_window_adaptation`, built
from BlackJAX's dual averaging and Welford mass matrix): the state carries Stan's window-adaptation state and updates
it during the first ``num_warmup`` steps, following BlackJAX's schedule; afterwards the parameters are frozen.
Variational and distributed methods have no adapter: they are not single-chain Markov kernels.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import blackjax
import jax
import jax.numpy as jnp
from blackjax.adaptation.staged_adaptation import build_schedule
from numpyro.infer.mcmc import MCMCKernel

from samplax.infer import cache as compilation_cache
from samplax.kernels import baselines
from samplax.models.bridge import build_target

compilation_cache.configure()  # a second process compiles nothing the first one did

__all__ = ["Kernel", "KernelState", "SamplaxKernelState", "NUTS", "MALA"]


class SamplaxKernelState(NamedTuple):
    """The state of `Kernel` as NumPyro's MCMC carries it.

    The iteration, the unconstrained sites (``z``, NumPyro's sample field), the BlackJAX kernel and adaptation states,
    the step size and inverse mass matrix in use, the last step's figures and the running figures of the phase.
    """

    i: jnp.ndarray
    z: dict  # unconstrained site values: NumPyro's sample_field
    kernel_state: NamedTuple  # the BlackJAX state on the flat vector
    adaptation_state: NamedTuple
    step_size: jnp.ndarray
    inverse_mass_matrix: jnp.ndarray
    accept_prob: jnp.ndarray
    diverging: jnp.ndarray
    rng_key: jnp.ndarray
    # running figures of the current phase (warm-up, then sampling), as NumPyro's HMC shows them: the last step's
    # acceptance alone flickers between 0 and 1 for MALA
    mean_accept_prob: jnp.ndarray
    num_divergences: jnp.ndarray


def _running_figures(state, num_warmup: int, accept, diverging):
    """Running mean acceptance and divergence count of the current phase (warm-up, then sampling).

    As NumPyro's HMC shows them: the last step's acceptance alone flickers between 0 and 1 for MALA.
    """
    in_phase = jnp.where(state.i < num_warmup, state.i, state.i - num_warmup) + 1  # this step included
    restart = state.i == num_warmup  # the sampling phase starts afresh
    previous = jnp.where(restart, 0.0, state.mean_accept_prob)
    mean_accept = previous + (accept - previous) / in_phase
    return mean_accept, jnp.where(restart, 0, state.num_divergences) + diverging.astype(jnp.int32)


class _ModelKernel(MCMCKernel):
    """What every samplax NumPyro kernel shares: the model, starting points, vectorised chains, constraining."""

    sample_field = "z"
    _target = None

    @property
    def model(self):
        return self._model

    @staticmethod
    def _starts(target, rng_key, init_params):
        """(keys, positions, batched): NumPyro's chain_method="vectorized" passes one key per chain."""
        is_typed = jax.dtypes.issubdtype(rng_key.dtype, jax.dtypes.prng_key)
        batched = rng_key.ndim > (0 if is_typed else 1)
        keys = rng_key if batched else rng_key[None]
        if init_params is not None:
            params = getattr(init_params, "z", init_params)
            positions = (
                jax.vmap(target.ravel_unconstrained)(params) if batched else target.ravel_unconstrained(params)[None]
            )
            for position in positions:
                target.check_initial_point(position)
        else:
            positions = target.init(jax.random.fold_in(keys[0], 1), keys.shape[0])
        return keys, positions, batched

    def sample(self, state, model_args, model_kwargs):
        if jnp.ndim(state.i) > 0:  # vectorised chains
            return jax.vmap(self._sample_one)(state)
        return self._sample_one(state)

    def postprocess_fn(self, model_args, model_kwargs):
        target = self._target if self._target is not None else build_target(self._model, model_kwargs, args=model_args)
        return lambda z: target.constrain(target.ravel_unconstrained(z))

    @property
    def default_fields(self):
        return ("z", "diverging", "accept_prob")


class _AdaptiveKernel(_ModelKernel):
    """Shared machinery: bridge the model, adapt online during warm-up, then step with frozen parameters."""

    target_accept = 0.8

    def __init__(self, model: Callable, *, target_accept: float | None = None, initial_step_size: float = 0.1):
        if model is None or not callable(model):
            raise ValueError("pass the NumPyro model: samplax.numpyro kernels are built from a model")
        self._model = model
        self._target_accept = target_accept if target_accept is not None else self.target_accept
        self._initial_step_size = initial_step_size
        self._target = None
        self._schedule = None
        self._num_warmup = 0

    def _kernel_init(self, position, logdensity):
        raise NotImplementedError

    def _kernel_step(self, key, state, logdensity, step_size, inverse_mass_matrix):
        raise NotImplementedError

    def init(self, rng_key, num_warmup, init_params, model_args, model_kwargs):
        target = build_target(self._model, model_kwargs, args=model_args)
        target.require_continuous(type(self).__name__)
        self._target = target
        self._num_warmup = int(num_warmup)
        self._schedule = build_schedule(max(self._num_warmup, 1))
        self._adapt_init, self._adapt_update, self._adapt_final = baselines.online_window_adaptation(
            self._target_accept
        )
        keys, positions, batched = self._starts(target, rng_key, init_params)

        def init_one(position, key):
            kernel_state = self._kernel_init(position, target.logdensity)
            adaptation_state = self._adapt_init(position, self._initial_step_size)
            return SamplaxKernelState(
                jnp.asarray(0),
                target.unravel(position),
                kernel_state,
                adaptation_state,
                jnp.asarray(self._initial_step_size, position.dtype),
                jnp.ones_like(position),
                jnp.zeros((), position.dtype),
                jnp.asarray(False),
                key,
                jnp.zeros((), position.dtype),
                jnp.asarray(0),
            )

        states = jax.vmap(init_one)(positions, keys)
        return states if batched else jax.tree.map(lambda x: x[0], states)

    def _sample_one(self, state):
        target = self._target
        key, step_key = jax.random.split(state.rng_key)
        kernel_state, accept_prob, diverging = self._kernel_step(
            step_key, state.kernel_state, target.logdensity, state.step_size, state.inverse_mass_matrix
        )
        accept_prob = jnp.where(jnp.isfinite(accept_prob), accept_prob, 0.0)
        adaptation_state, step_size, inverse_mass_matrix = (
            state.adaptation_state,
            state.step_size,
            state.inverse_mass_matrix,
        )
        if self._num_warmup > 0:
            schedule = jnp.asarray(self._schedule)
            stage = schedule[jnp.minimum(state.i, self._num_warmup - 1)]

            def adapt(_):
                new = self._adapt_update(
                    state.adaptation_state, (stage[0], stage[1]), kernel_state.position, accept_prob
                )
                last = state.i == self._num_warmup - 1
                final_step, final_imm = self._adapt_final(new)
                return (
                    new,
                    jnp.where(last, final_step, new.step_size),
                    jnp.where(last, final_imm, new.inverse_mass_matrix),
                )

            adaptation_state, step_size, inverse_mass_matrix = jax.lax.cond(
                state.i < self._num_warmup,
                adapt,
                lambda _: (state.adaptation_state, state.step_size, state.inverse_mass_matrix),
                None,
            )
        mean_accept_prob, num_divergences = _running_figures(state, self._num_warmup, accept_prob, diverging)
        return SamplaxKernelState(
            state.i + 1,
            target.unravel(kernel_state.position),
            kernel_state,
            adaptation_state,
            step_size,
            inverse_mass_matrix,
            accept_prob,
            diverging,
            key,
            mean_accept_prob,
            num_divergences,
        )

    def get_diagnostics_str(self, state):
        return (
            f"step size {float(state.step_size):.2e}. acc. prob={float(state.mean_accept_prob):.2f}. "
            f"{int(state.num_divergences)} divergences"
        )


class MALA(_AdaptiveKernel):
    """samplax's MALA (BlackJAX step, diagonal preconditioning, windowed dual averaging) as a NumPyro kernel."""

    target_accept = 0.574

    def _kernel_init(self, position, logdensity):
        return baselines.mala_init(position, logdensity)

    def _kernel_step(self, key, state, logdensity, step_size, inverse_mass_matrix):
        new_state, info = baselines.mala_step(logdensity, baselines.MALAParams(step_size, inverse_mass_matrix))(
            key, state
        )
        return new_state, info.acceptance_rate, info.diverging


class NUTS(_AdaptiveKernel):
    """BlackJAX NUTS with online Stan-style adaptation as a NumPyro kernel."""

    target_accept = 0.8

    def __init__(
        self,
        model: Callable,
        *,
        target_accept: float | None = None,
        initial_step_size: float = 1.0,
        max_tree_depth: int = 10,
    ):
        super().__init__(model, target_accept=target_accept, initial_step_size=initial_step_size)
        self._max_tree_depth = max_tree_depth

    def _kernel_init(self, position, logdensity):
        return blackjax.nuts.init(position, logdensity)

    def _kernel_step(self, key, state, logdensity, step_size, inverse_mass_matrix):
        new_state, info = baselines.nuts_step(
            logdensity, baselines.NUTSParams(step_size, inverse_mass_matrix), max_tree_depth=self._max_tree_depth
        )(key, state)
        return new_state, info.acceptance_rate, info.is_divergent


class KernelState(NamedTuple):
    """The state of `Kernel`: NumPyro's counter and sample field around the method's own chain state."""

    i: jnp.ndarray
    z: dict  # unconstrained site values: NumPyro's sample_field
    chain_state: NamedTuple  # the method's kernel state
    params: NamedTuple  # the parameters its warm-up adapted (step size, mass matrix, ...)
    accept_prob: jnp.ndarray
    diverging: jnp.ndarray
    rng_key: jnp.ndarray
    mean_accept_prob: jnp.ndarray
    num_divergences: jnp.ndarray


class Kernel(_ModelKernel):
    """Any samplax MCMC method as a `numpyro.infer.MCMC` kernel: ``Kernel(model, method="myula", **options)``.

    The options are the method's own (``samplax methods``, `samplax.infer.options.schema`), checked when the kernel
    is built. The method's warm-up (the same adaptation as ``samplax.fit``: Stan's windows for nuts, dual averaging
    for mala/bplmc/myula, ...) runs as one compiled call inside ``init`` for ``num_warmup`` steps, because these
    warm-ups adapt over the whole window at once rather than step by step; NumPyro's own warm-up iterations then
    cost nothing and leave the chain where warm-up ended (``collect_warmup=True`` collects the starting point
    repeatedly: look at draws after warm-up only), and its sampling iterations are the method's transitions with the adapted parameters. `NUTS` and
    `MALA` above adapt online instead, so NumPyro's bar shows their warm-up step by step.

    Methods whose chains need more than the model's log density (the gibbs family's factor tables) and methods that
    are not Markov chains (smc, mixflow, cmcd, admm, ...) are refused: run them with ``samplax.fit``.
    """

    def __init__(self, model: Callable, method: str = "nuts", **options):
        from samplax.infer import registry
        from samplax.infer.methods import MCMCMethod
        from samplax.infer.options import validate

        if model is None or not callable(model):
            raise ValueError("pass the NumPyro model: samplax.numpyro.Kernel is built from a model")
        spec = registry.get(method)
        if not isinstance(spec, MCMCMethod) or spec.prepare is not None:
            raise ValueError(
                f"method '{method}' cannot run inside numpyro.infer.MCMC: "
                + (
                    "it is not a Markov chain"
                    if not isinstance(spec, MCMCMethod)
                    else "its chains run on the model's factor tables, built by samplax.fit"
                )
                + f"; use samplax.fit(model, data, method='{method}')"
            )
        self._model = model
        self._method_name = method
        self._method = spec
        self._options = validate(method, options)
        self._target = None
        self._num_warmup = 0
        self._step = None

    def init(self, rng_key, num_warmup, init_params, model_args, model_kwargs):
        from samplax.infer.driver import unsupported_features

        target = build_target(self._model, model_kwargs, args=model_args)
        target.require_supported(self._method_name, unsupported_features(self._method))
        self._target = target
        self._num_warmup = int(num_warmup)
        method, options = self._method, self._options
        self._step = method.step(target, options)
        keys, positions, batched = self._starts(target, rng_key, init_params)
        warmup_keys = jax.vmap(lambda key: jax.random.fold_in(key, 2))(keys)
        if self._num_warmup > 0:
            warm = jax.jit(jax.vmap(method.warmup(target, options, self._num_warmup)))
            chain_states, adapted, _ = warm(warmup_keys, positions)
        else:
            chain_states, adapted = jax.vmap(method.start(target, options))(positions)
        zero = jnp.zeros((keys.shape[0],), positions.dtype)
        states = KernelState(
            jnp.zeros((keys.shape[0],), jnp.int32),
            jax.vmap(target.unravel)(positions),
            chain_states,
            adapted,
            zero,
            jnp.zeros((keys.shape[0],), bool),
            keys,
            zero,
            jnp.zeros((keys.shape[0],), jnp.int32),
        )
        return states if batched else jax.tree.map(lambda x: x[0], states)

    def _sample_one(self, state):
        key, step_key = jax.random.split(state.rng_key)

        def transition(_):
            chain_state, info = self._step(step_key, state.chain_state, state.params)
            record = self._method.record(chain_state, info)
            accept = jnp.asarray(record.get("acceptance_rate", 1.0), state.accept_prob.dtype)
            accept = jnp.where(jnp.isfinite(accept), accept, 0.0)
            diverging = jnp.asarray(record.get("diverging", False), bool)
            return chain_state, record["z"], accept, diverging

        def warmup_pass(_):  # warm-up ran in init: NumPyro's warm-up iterations keep the adapted state
            return (
                state.chain_state,
                self._target.ravel_unconstrained(state.z),
                jnp.ones_like(state.accept_prob),
                jnp.asarray(False),
            )

        chain_state, z, accept, diverging = jax.lax.cond(state.i < self._num_warmup, warmup_pass, transition, None)
        mean_accept, divergences = _running_figures(state, self._num_warmup, accept, diverging)
        return KernelState(
            state.i + 1,
            self._target.unravel(z),
            chain_state,
            state.params,
            accept,
            diverging,
            key,
            mean_accept,
            divergences,
        )

    def get_diagnostics_str(self, state):
        return (
            f"{self._method_name}: acc. prob={float(state.mean_accept_prob):.2f}. "
            f"{int(state.num_divergences)} divergences"
        )
