"""Meta-learned block proposals: the mixture density network, its meta-training and its data-only files.

Paper: T. Wang, Y. Wu, D. A. Moore and S. J. Russell, "Meta-Learning MCMC Proposals", NeurIPS 2018
(arXiv 1708.06040; first titled "Neural Block Sampling").

**Proposal.** A mixture density network over a block B of variables, conditioned on x = concat(vec(Theta), c), the
local parameters of the motif instance and the values of its conditioning set:

    h = MLP(x),   q(b | x) = sum_m pi_m(h) prod_{v in B} f_v(b_v; eta_{m,v}(h)),

with f_v categorical for a discrete v (probabilities floored inside every component, p = floor + (1 - K floor)
softmax(logits), so that q > 0 on every state) and Normal for a real v. It is scored with
log q = logsumexp_m [log pi_m + sum_v log f_v(b_v)] and sampled component first, then the block.

**Meta-training.** Minimise E_Theta E_c KL(p_Theta(B | c) || q(B | c, Theta)) = -E log q(b | x) + const over
(b, c) drawn by forward sampling the motif's own sub-network with random local parameters Theta (unlimited data;
held-out Theta draws measure generalisation).

**Block Metropolis-Hastings.** For an instance with block b and input x: b' ~ q(. | x) and

    log alpha = [sum_{f touching B} log f(b', rest) - log f(b, rest)] + log q(b | x) - log q(b' | x),

an independence MH step on the block conditional: it leaves the posterior invariant whatever q is.

The tabular factor graphs, the sweeps that use these proposals and the single-site updates are in
`samplax.kernels.gibbs`.

Usage (the pieces compose; `samplax.kernels.gibbs` uses them as block proposals):

    config = ProposalConfig(num_inputs=74, num_discrete=9)
    params = init_params(key, config)
    params, history = train(key, params, config, sample_batch, num_steps=2000)
    block = sample(params, config, key, x);  log_q = log_prob(params, config, x, block)
"""

from __future__ import annotations

import io
import json
import zipfile
import zlib
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.scipy.special import logsumexp

__all__ = [
    "ProposalConfig",
    "BlockValue",
    "init_params",
    "log_prob",
    "sample",
    "nll_loss",
    "train",
    "TrainingHistory",
    "discrete_block_states",
    "exact_kl_and_acceptance",
    "save_proposal",
    "load_proposal",
    "FORMAT_NAME",
    "FORMAT_VERSION",
]

FORMAT_NAME = "samplax-meta-proposal"
FORMAT_VERSION = 1
_MIN_LOG_SCALE = -7.0
_MAX_LOG_SCALE = 3.0


# =====================================================================================================================
# the mixture density proposal
class ProposalConfig(NamedTuple):
    """Static shape of a proposal network.

    num_inputs: length of x = concat(vec(Theta), c); num_discrete / num_categories: discrete block variables and
    their number of states; num_real: real block variables; hidden_sizes: MLP widths; num_components: mixture
    components; probability_floor: the least probability of any state of a discrete variable inside a component.
    """

    num_inputs: int
    num_discrete: int = 0
    num_categories: int = 2
    num_real: int = 0
    hidden_sizes: tuple = (128, 128)
    num_components: int = 8
    probability_floor: float = 1e-4

    def to_json(self) -> dict:
        return {name: (list(value) if isinstance(value, tuple) else value) for name, value in self._asdict().items()}

    @classmethod
    def from_json(cls, record: dict) -> ProposalConfig:
        record = dict(record)
        record["hidden_sizes"] = tuple(int(h) for h in record["hidden_sizes"])
        return cls(**record)


class BlockValue(NamedTuple):
    """One value of a block: discrete states (num_discrete,) int32 and real values (num_real,)."""

    discrete: jnp.ndarray
    real: jnp.ndarray


def _output_size(config: ProposalConfig) -> int:
    c = config.num_components
    return c + c * config.num_discrete * config.num_categories + 2 * c * config.num_real


def init_params(key, config: ProposalConfig, inputs=None) -> dict:
    """Glorot-initialised MLP parameters.

    The head starts near zero, so an untrained q is close to uniform on discrete blocks (and N(0, 1) on real ones).
    ``inputs`` (a batch of x), if given, sets the input standardisation.
    """
    _check_config(config)
    sizes = (config.num_inputs,) + tuple(config.hidden_sizes)
    keys = jax.random.split(key, len(sizes))
    layers = []
    for k, (n_in, n_out) in zip(keys[:-1], zip(sizes[:-1], sizes[1:])):
        w = jax.random.normal(k, (n_in, n_out)) * jnp.sqrt(2.0 / (n_in + n_out))
        layers.append({"w": w, "b": jnp.zeros(n_out)})
    head = {
        "w": 0.01 * jax.random.normal(keys[-1], (sizes[-1], _output_size(config))),
        "b": jnp.zeros(_output_size(config)),
    }
    if inputs is None:
        shift, scale = jnp.zeros(config.num_inputs), jnp.ones(config.num_inputs)
    else:
        inputs = jnp.asarray(inputs).reshape(-1, config.num_inputs)
        shift, scale = jnp.mean(inputs, axis=0), jnp.std(inputs, axis=0) + 1e-3
    return {"layers": layers, "head": head, "input_shift": shift, "input_scale": scale}


def _check_config(config: ProposalConfig):
    if config.num_inputs < 1:
        raise ValueError(f"num_inputs must be >= 1, got {config.num_inputs}")
    if config.num_discrete < 0 or config.num_real < 0 or config.num_discrete + config.num_real < 1:
        raise ValueError("a block needs at least one variable: num_discrete + num_real >= 1")
    if config.num_categories < 2:
        raise ValueError(f"num_categories must be >= 2, got {config.num_categories}")
    if not 0.0 < config.probability_floor < 1.0 / config.num_categories:
        raise ValueError(f"probability_floor must lie in (0, 1/num_categories), got {config.probability_floor}")
    if config.num_components < 1:
        raise ValueError(f"num_components must be >= 1, got {config.num_components}")


def _heads(params: dict, config: ProposalConfig, x):
    """The network's heads: x (num_inputs,) -> log pi (C,), log p (C, nd, K), mean (C, nr), log_scale (C, nr)."""
    h = (x - jax.lax.stop_gradient(params["input_shift"])) / jax.lax.stop_gradient(params["input_scale"])
    for layer in params["layers"]:
        h = jax.nn.gelu(h @ layer["w"] + layer["b"])
    out = h @ params["head"]["w"] + params["head"]["b"]
    c, nd, k, nr = config.num_components, config.num_discrete, config.num_categories, config.num_real
    log_pi = jax.nn.log_softmax(out[:c])
    offset = c
    logits = out[offset : offset + c * nd * k].reshape(c, nd, k)
    offset += c * nd * k
    floor = config.probability_floor
    log_p = jnp.log(floor + (1.0 - k * floor) * jax.nn.softmax(logits, axis=-1))
    mean = out[offset : offset + c * nr].reshape(c, nr)
    offset += c * nr
    log_scale = jnp.clip(out[offset : offset + c * nr].reshape(c, nr), _MIN_LOG_SCALE, _MAX_LOG_SCALE)
    return log_pi, log_p, mean, log_scale


def _component_log_probs(config, log_p, mean, log_scale, block: BlockValue):
    """sum_v log f_v(b_v) for every component: (C,)."""
    total = jnp.zeros(config.num_components)
    if config.num_discrete:
        picked = jnp.take_along_axis(log_p, block.discrete.astype(jnp.int32)[None, :, None], axis=2)[..., 0]
        total = total + jnp.sum(picked, axis=1)
    if config.num_real:
        z = (block.real[None, :] - mean) * jnp.exp(-log_scale)
        total = total + jnp.sum(-0.5 * z**2 - log_scale - 0.5 * jnp.log(2 * jnp.pi), axis=1)
    return total


def log_prob(params: dict, config: ProposalConfig, x, block: BlockValue):
    """The proposal's log density, log q(block | x) = logsumexp_m [log pi_m + sum_v log f_v(block_v)]."""
    log_pi, log_p, mean, log_scale = _heads(params, config, x)
    return logsumexp(log_pi + _component_log_probs(config, log_p, mean, log_scale, block))


def sample(params: dict, config: ProposalConfig, key, x) -> BlockValue:
    """Draw b ~ q(. | x): a component m ~ pi(x) first, then every variable from its factor in component m."""
    log_pi, log_p, mean, log_scale = _heads(params, config, x)
    key_component, key_discrete, key_real = jax.random.split(key, 3)
    m = jax.random.categorical(key_component, log_pi)
    if config.num_discrete:
        discrete = jax.random.categorical(key_discrete, log_p[m], axis=-1).astype(jnp.int32)
    else:
        discrete = jnp.zeros((0,), jnp.int32)
    if config.num_real:
        real = mean[m] + jnp.exp(log_scale[m]) * jax.random.normal(key_real, (config.num_real,), dtype=mean.dtype)
    else:
        real = jnp.zeros((0,), mean.dtype)
    return BlockValue(discrete, real)


def nll_loss(params: dict, config: ProposalConfig, inputs, blocks: BlockValue):
    """Mean of -log q(b | x) over a batch: the forward KL up to a constant."""
    return -jnp.mean(
        jax.vmap(lambda x, d, r: log_prob(params, config, x, BlockValue(d, r)))(inputs, blocks.discrete, blocks.real)
    )


# =====================================================================================================================
# meta-training
class TrainingHistory(NamedTuple):
    """The training history, per evaluation point.

    The step, the training loss (mean over the steps since the last point), the held-out negative log-likelihood and,
    when an exact evaluator is given, its metrics (e.g. exact KL, acceptance).
    """

    step: list
    train_nll: list
    heldout_nll: list
    metrics: dict


def train(
    key,
    params: dict,
    config: ProposalConfig,
    sample_batch: Callable,
    *,
    num_steps: int,
    batch_size: int = 256,
    learning_rate: float = 1e-3,
    validation=None,
    eval_every: int | None = None,
    evaluate: Callable | None = None,
    progress: Callable | None = None,
):
    """Adam on -log q over fresh forward samples each step (``sample_batch(key, batch_size) -> (x, BlockValue)``).

    validation: (x, BlockValue) held out (drawn with other keys, hence other Theta); evaluate: optional
    ``params -> dict`` of extra held-out metrics. Steps run in jitted chunks of ``eval_every`` (a lax.scan), and the
    history records the losses between chunks. Returns (params, TrainingHistory).
    """
    if num_steps < 0:
        raise ValueError(f"num_steps must be >= 0, got {num_steps}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    eval_every = int(eval_every or max(1, min(num_steps, 200)))
    schedule = optax.cosine_decay_schedule(learning_rate, max(num_steps, 1), alpha=0.1)
    optimiser = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(schedule))
    trainable, frozen = _split_trainable(params)
    opt_state = optimiser.init(trainable)

    def loss_fn(trainable, x, blocks):
        return nll_loss({**trainable, **frozen}, config, x, blocks)

    def one_step(carry, step_key):
        trainable, opt_state = carry
        x, blocks = sample_batch(step_key, batch_size)
        loss, grads = jax.value_and_grad(loss_fn)(trainable, x, blocks)
        updates, opt_state = optimiser.update(grads, opt_state, trainable)
        return (optax.apply_updates(trainable, updates), opt_state), loss

    @jax.jit
    def chunk(trainable, opt_state, keys):
        (trainable, opt_state), losses = jax.lax.scan(one_step, (trainable, opt_state), keys)
        return trainable, opt_state, jnp.mean(losses)

    heldout = jax.jit(lambda trainable: loss_fn(trainable, *validation)) if validation is not None else None
    history = TrainingHistory([], [], [], {})

    def record(step, train_loss):
        history.step.append(int(step))
        history.train_nll.append(float(train_loss))
        history.heldout_nll.append(float(heldout(trainable)) if heldout is not None else float("nan"))
        if evaluate is not None:
            for name, value in evaluate({**trainable, **frozen}).items():
                history.metrics.setdefault(name, []).append(float(value))
        if progress is not None:
            progress(history)

    record(0, float("nan"))
    done = 0
    while done < num_steps:
        size = min(eval_every, num_steps - done)
        keys = jax.random.split(jax.random.fold_in(key, done), size)
        trainable, opt_state, loss = chunk(trainable, opt_state, keys)
        done += size
        record(done, loss)
    return {**trainable, **frozen}, history


def _split_trainable(params: dict):
    frozen = {k: params[k] for k in ("input_shift", "input_scale")}
    trainable = {k: v for k, v in params.items() if k not in frozen}
    return trainable, frozen


def discrete_block_states(num_variables: int, num_categories: int = 2) -> np.ndarray:
    """All num_categories^num_variables states of a discrete block, (S, num_variables); variable 0 varies fastest."""
    count = num_categories**num_variables
    if count > 2**16:
        raise ValueError(
            f"a block of {num_variables} variables with {num_categories} states has {count} states; "
            "exact enumeration is limited to 65536"
        )
    codes = np.arange(count)[:, None] // (num_categories ** np.arange(num_variables))[None, :]
    return (codes % num_categories).astype(np.int32)


def exact_kl_and_acceptance(params: dict, config: ProposalConfig, inputs, log_p, states):
    """Exact KL(p || q) and the stationary acceptance rate of independence MH, averaged over held-out instances.

    inputs (N, num_inputs); log_p (N, S): normalised exact block conditionals log p(b | c, Theta) over ``states``
    (S, num_discrete). Acceptance = sum_{b, b'} p(b) q(b') min(1, w(b') / w(b)) with w = p / q: the probability that
    a proposal is accepted when the chain is at stationarity.
    """
    states = jnp.asarray(states)
    empty = jnp.zeros((0,))

    def one(x, lp):
        lq = jax.vmap(lambda s: log_prob(params, config, x, BlockValue(s, empty)))(states)
        lq = lq - logsumexp(lq)  # q restricted to the enumerated states (all of them: q sums to 1 there)
        p = jnp.exp(lp)
        kl = jnp.sum(jnp.where(p > 0, p * (lp - lq), 0.0))
        log_w = lp - lq
        ratio = jnp.exp(jnp.minimum(0.0, log_w[None, :] - log_w[:, None]))  # [b, b']
        accept = jnp.sum(jnp.where((p > 0)[:, None], p[:, None] * jnp.exp(lq)[None, :] * ratio, 0.0))
        return kl, accept

    kl, accept = jax.lax.map(lambda args: one(*args), (jnp.asarray(inputs), jnp.asarray(log_p)))
    return jnp.mean(kl), jnp.mean(accept)


# =====================================================================================================================
# data-only saving (npz + JSON header; never pickle)
def save_proposal(path, params: dict, config: ProposalConfig, header: dict):
    """Write the network to ``path`` (.npz): arrays by name plus a JSON header. Loading runs no code.

    The header holds the format, version, config, and the caller's ``header`` (the motif signature and training
    settings).
    """
    arrays = {}
    for index, layer in enumerate(params["layers"]):
        arrays[f"layer{index}_w"] = np.asarray(layer["w"])
        arrays[f"layer{index}_b"] = np.asarray(layer["b"])
    arrays["head_w"] = np.asarray(params["head"]["w"])
    arrays["head_b"] = np.asarray(params["head"]["b"])
    arrays["input_shift"] = np.asarray(params["input_shift"])
    arrays["input_scale"] = np.asarray(params["input_scale"])
    record = dict(header)
    record.update(
        {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "config": config.to_json(),
            "arrays": {name: list(value.shape) for name, value in arrays.items()},
        }
    )
    arrays["header"] = np.frombuffer(json.dumps(record, sort_keys=True).encode("utf-8"), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **{k: (v.astype(np.float32) if v.dtype.kind == "f" else v) for k, v in arrays.items()})
    with open(path, "wb") as handle:
        handle.write(buffer.getvalue())
    return path


def load_proposal(path) -> tuple[dict, ProposalConfig, dict]:
    """(params, config, header) from a file written by `save_proposal`; checks the format, version and shapes."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as error:  # truncated or not a zip
        raise ValueError(f"{path}: not a readable proposal file ({type(error).__name__}: {error})") from None
    if "header" not in arrays:
        raise ValueError(f"{path}: no JSON header; not a samplax proposal file")
    try:
        header = json.loads(arrays.pop("header").tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: the header is not JSON text ({error}); not a samplax proposal file") from None
    if not isinstance(header, dict) or not isinstance(header.get("config"), dict):
        raise ValueError(f"{path}: the header has no 'config' object; not a samplax proposal file")
    if header.get("format") != FORMAT_NAME:
        raise ValueError(f"{path}: format {header.get('format')!r} is not {FORMAT_NAME!r}")
    if header.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path}: format version {header.get('format_version')} is not supported (this samplax reads "
            f"version {FORMAT_VERSION}); retrain it with this version"
        )
    for name, shape in header.get("arrays", {}).items():
        if name not in arrays or list(arrays[name].shape) != list(shape):
            raise ValueError(f"{path}: array {name!r} is missing or has the wrong shape (header says {shape})")
    config = ProposalConfig.from_json(header["config"])
    layers = [
        {"w": jnp.asarray(arrays[f"layer{i}_w"]), "b": jnp.asarray(arrays[f"layer{i}_b"])}
        for i in range(len(config.hidden_sizes))
    ]
    params = {
        "layers": layers,
        "head": {"w": jnp.asarray(arrays["head_w"]), "b": jnp.asarray(arrays["head_b"])},
        "input_shift": jnp.asarray(arrays["input_shift"]),
        "input_scale": jnp.asarray(arrays["input_scale"]),
    }
    if params["layers"] and params["layers"][0]["w"].shape[0] != config.num_inputs:
        raise ValueError(
            f"{path}: the first layer takes {params['layers'][0]['w'].shape[0]} inputs but the config "
            f"says {config.num_inputs}"
        )
    return params, config, header
