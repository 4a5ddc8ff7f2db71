"""Binary grid Bayesian networks with random conditional tables and evidence (the UAI 2008 "grid" family).

Node (i, j) of an R x C grid is a binary site ``x_{i}_{j}`` whose parents are the node above, (i - 1, j), and the
node to the left, (i, j - 1), where they exist:

    P(x_{i,j} = 1 | up, left) = cpt[i, j, 2 * up + left]        (an absent parent reads as 0).

The grid families of the UAI 2008 inference competition (Sang, Beame and Kautz's "ratio" grids) draw each row of a
conditional table as deterministic (probability 0 or 1, each half the time) with probability
``deterministic_fraction`` (50, 75 or 90 %) and uniform on (0, 1) otherwise. ``evidence[i, j]`` is -1 for a latent
node and 0 or 1 for an observed one; `grid_network_data` observes ``num_evidence`` random nodes at the values of one
forward sample of the network, so the evidence always has positive probability.

Exact answers (`grid_network_reference`): the posterior marginal P(x_{i,j} = 1 | evidence) of every latent node and
log P(evidence), by enumeration when at most `ENUMERATION_LIMIT` nodes are latent (`enumerate_marginals`) and by
variable elimination otherwise (`variable_elimination_marginals`). Variable elimination runs along the row-major
order of the (transposed, if that is narrower) grid: the forward messages are the distributions of the last W nodes
(W = the width), the backward messages the evidence still to come, so every marginal costs one forward and one
backward pass of O(R C 2^W) work; forward messages are stored once per row and recomputed within a row, so memory is
O(R 2^W). A 20 x 20 grid takes a few seconds.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from samplax.models.zoo.base import Reference, ZooModel, check_positive_int, rng

__all__ = [
    "GRID_NETWORK",
    "grid_network_model",
    "grid_network_data",
    "grid_network_reference",
    "site_name",
    "enumerate_marginals",
    "variable_elimination_marginals",
    "random_conditional_tables",
    "ENUMERATION_LIMIT",
    "FAMILIES",
]

ENUMERATION_LIMIT = 18
WIDTH_LIMIT = 24
# The deterministic fractions of the UAI 2008 grid families ("50-", "75-" and "90-" grids).
FAMILIES = {"grid50": 0.5, "grid75": 0.75, "grid90": 0.9}


def site_name(row: int, col: int) -> str:
    """The NumPyro site of node (row, col): ``x_{row}_{col}``."""
    return f"x_{row}_{col}"


def _check_tables(cpt) -> np.ndarray:
    # read on the host, as a user's model would: traced tables raise JAX's TracerArrayConversionError, and samplax's
    # bridge then passes the data as constants
    table = np.asarray(cpt, dtype=float)
    if table.ndim != 3 or table.shape[2] != 4 or table.shape[0] < 1 or table.shape[1] < 1:
        raise ValueError(
            f"argument 'cpt': expected shape (rows, cols, 4) of P(x = 1 | up, left) at index "
            f"2 * up + left, got {table.shape}"
        )
    if np.any(table < 0) or np.any(table > 1) or not np.all(np.isfinite(table)):
        raise ValueError("argument 'cpt': probabilities must lie in [0, 1]")
    return table


def _check_evidence(evidence, shape) -> np.ndarray:
    if evidence is None:
        return np.full(shape, -1, dtype=np.int64)
    values = np.asarray(evidence)  # which nodes are observed is decided when the model is traced: host values
    if values.shape != shape:
        raise ValueError(f"argument 'evidence': expected shape {shape} (one entry per node), got {values.shape}")
    if not np.all(np.isin(values, (-1, 0, 1))):
        raise ValueError("argument 'evidence': entries must be -1 (latent), 0 or 1 (observed value)")
    return values.astype(np.int64)


def grid_network_model(cpt, evidence=None):
    """One Bernoulli site per node, ``x_{i}_{j}``; nodes with ``evidence[i, j] >= 0`` are observed."""
    table = _check_tables(cpt)
    rows, cols, _ = table.shape
    observed = _check_evidence(evidence, (rows, cols))
    probabilities = jnp.asarray(table)
    values = {}
    for i in range(rows):
        for j in range(cols):
            up = values[(i - 1, j)] if i > 0 else 0
            left = values[(i, j - 1)] if j > 0 else 0
            p = probabilities[i, j, 2 * up + left]
            obs = int(observed[i, j]) if observed[i, j] >= 0 else None
            value = numpyro.sample(site_name(i, j), dist.Bernoulli(probs=p), obs=obs)
            values[(i, j)] = jnp.asarray(value, dtype=jnp.int32)


def random_conditional_tables(
    generator: np.random.Generator, rows: int, cols: int, deterministic_fraction: float
) -> np.ndarray:
    """Tables of the UAI grid families: each row deterministic (0 or 1) with the given probability, else U(0, 1).

    Rows that an absent parent never selects are copies of the selected ones, so every table is well defined.
    """
    if not 0.0 <= deterministic_fraction <= 1.0:
        raise ValueError(
            f"argument 'deterministic_fraction': expected a number in [0, 1], got {deterministic_fraction!r}"
        )
    uniform = generator.uniform(size=(rows, cols, 4))
    deterministic = generator.uniform(size=(rows, cols, 4)) < deterministic_fraction
    coin = (generator.uniform(size=(rows, cols, 4)) < 0.5).astype(float)
    table = np.where(deterministic, coin, uniform)
    table[0, :, 2:] = table[0, :, :2]  # no parent above: up reads as 0
    table[:, 0, 1::2] = table[:, 0, 0::2]  # no parent to the left: left reads as 0
    return table


def forward_sample(generator: np.random.Generator, cpt: np.ndarray) -> np.ndarray:
    """One ancestral sample of the whole grid (no evidence)."""
    rows, cols, _ = cpt.shape
    x = np.zeros((rows, cols), dtype=np.int64)
    for i in range(rows):
        for j in range(cols):
            up = x[i - 1, j] if i > 0 else 0
            left = x[i, j - 1] if j > 0 else 0
            x[i, j] = generator.uniform() < cpt[i, j, 2 * up + left]
    return x


def grid_network_data(seed=0, rows=6, cols=6, deterministic_fraction=0.5, num_evidence=2) -> dict:
    """Random tables of the given family and ``num_evidence`` observed nodes (values from one forward sample).

    The defaults (6 x 6, seed 0) leave the four interior 3 x 3 blocks latent, so the zoo entry contains the grid motif
    and ``samplax fit grid_network --method meta_gibbs`` finds blocks to propose (a 5 x 5 grid has one interior block).
    """
    rows = check_positive_int(rows, "rows")
    cols = check_positive_int(cols, "cols")
    num_evidence = check_positive_int(num_evidence, "num_evidence", minimum=0)
    if num_evidence > rows * cols:
        raise ValueError(f"argument 'num_evidence': at most rows * cols = {rows * cols} nodes can be observed")
    generator = rng(seed)
    cpt = random_conditional_tables(generator, rows, cols, float(deterministic_fraction))
    sample = forward_sample(generator, cpt)
    evidence = np.full((rows, cols), -1, dtype=np.int64)
    chosen = generator.choice(rows * cols, size=num_evidence, replace=False)
    evidence.reshape(-1)[chosen] = sample.reshape(-1)[chosen]
    return {"cpt": cpt, "evidence": evidence}


# --------------------------------------------------------------------------------------------------- exact answers
def _node_log_tables(cpt: np.ndarray, evidence: np.ndarray) -> np.ndarray:
    """The nodes' log tables, log f[i, j, x, up, left] = log P(x | up, left), times the evidence indicator.

    -inf where impossible.
    """
    p1 = cpt.reshape(cpt.shape[:2] + (2, 2))  # [i, j, up, left]
    table = np.stack([1.0 - p1, p1], axis=2)  # [i, j, x, up, left]
    mask = np.ones_like(table)
    observed = evidence >= 0
    for value in (0, 1):
        mask[:, :, 1 - value][observed & (evidence == value)] = 0.0
    with np.errstate(divide="ignore"):
        return np.log(table * mask)


def enumerate_marginals(cpt, evidence=None) -> tuple[np.ndarray, float]:
    """(P(x = 1 | evidence) per node, log P(evidence)) by summing over every latent configuration.

    For at most `ENUMERATION_LIMIT` latent nodes; observed nodes get their observed value as "marginal".
    """
    cpt = _check_tables(cpt)
    rows, cols, _ = cpt.shape
    evidence = _check_evidence(evidence, (rows, cols))
    latent = np.flatnonzero(evidence.reshape(-1) < 0)
    if latent.size > ENUMERATION_LIMIT:
        raise ValueError(
            f"enumeration needs at most {ENUMERATION_LIMIT} latent nodes, the grid has {latent.size}; "
            "use variable_elimination_marginals"
        )
    count = 2**latent.size
    states = ((np.arange(count)[:, None] >> np.arange(latent.size)[None, :]) & 1).astype(np.int8)
    x = np.broadcast_to(np.where(evidence < 0, 0, evidence).reshape(-1).astype(np.int8), (count, rows * cols)).copy()
    x[:, latent] = states
    x = x.reshape(count, rows, cols)
    with np.errstate(divide="ignore"):
        log_f = _node_log_tables(cpt, evidence)  # [i, j, x, up, left]
    log_joint = np.zeros(count)
    for i in range(rows):
        for j in range(cols):
            up = x[:, i - 1, j] if i > 0 else 0
            left = x[:, i, j - 1] if j > 0 else 0
            log_joint += log_f[i, j][x[:, i, j], up, left]
    shift = np.max(log_joint)
    if not np.isfinite(shift):
        raise ValueError("the evidence has probability 0 under these tables")
    weights = np.exp(log_joint - shift)
    total = weights.sum()
    marginals = np.tensordot(weights, x.reshape(count, -1).astype(float), axes=1) / total
    return marginals.reshape(rows, cols), float(np.log(total) + shift)


def variable_elimination_marginals(cpt, evidence=None) -> tuple[np.ndarray, float]:
    """(P(x = 1 | evidence) per node, log P(evidence)) by variable elimination along the row-major order.

    The grid is transposed first when that makes the frontier (the width) narrower; widths above `WIDTH_LIMIT`
    are refused (the messages have 2^width entries).
    """
    cpt = _check_tables(cpt)
    rows, cols, _ = cpt.shape
    evidence = _check_evidence(evidence, (rows, cols))
    log_f = _node_log_tables(cpt, evidence)  # [i, j, x, up, left]
    transposed = cols > rows
    if transposed:  # node (i, j) -> (j, i): the parents swap roles
        log_f = np.transpose(log_f, (1, 0, 2, 4, 3))
        rows, cols = cols, rows
    width = cols
    if width > WIDTH_LIMIT:
        raise ValueError(
            f"the grid's narrower side is {width} > {WIDTH_LIMIT}: exact marginals need 2^{width} "
            "numbers per message; use a smaller grid"
        )
    if width == 1:  # a chain: give it a second, empty column so the frontier logic applies
        marginals, log_z = _chain_marginals(log_f[:, 0])
        return (marginals.T if transposed else marginals), log_z
    with np.errstate(over="ignore"):
        factors = np.exp(log_f)
    # g_t[c, a, b]: factor of node t as a function of (x_t = c, x_{t-W} = a, x_{t-1} = b); for j = 0 the
    # node has no left parent, so it ignores x_{t-1} (the previous row's last node).
    g = factors.copy()
    g[:, 0] = np.repeat(factors[:, 0, :, :, :1], 2, axis=3)
    g = g.reshape(rows * cols, 2, 2, 2)
    n = rows * cols
    half = 2 ** (width - 2)

    def forward(alpha, t):  # alpha_{t-1}[a, m, b] -> alpha_t[m, b, c] = sum_a alpha[a, m, b] g_t[c, a, b]
        a = alpha.reshape(2, half, 2)
        gt = np.transpose(g[t], (1, 2, 0))  # [a, b, c]
        new = a[0][:, :, None] * gt[0][None] + a[1][:, :, None] * gt[1][None]
        total = new.sum()
        return new.reshape(-1) / total, total

    def backward(beta, t):  # beta_t[m, b, c] -> beta_{t-1}[a, m, b] = sum_c g_t[c, a, b] beta_t[m, b, c]
        b = beta.reshape(half, 2, 2)
        new = np.stack([b[:, :, 0] * g[t][0, a][None] + b[:, :, 1] * g[t][1, a][None] for a in (0, 1)])
        new = new.reshape(-1)
        return new / new.sum()

    alpha = np.zeros(2**width)
    alpha[0] = 1.0  # W virtual nodes before node 0, all fixed at 0
    checkpoints, log_z = [], 0.0
    for t in range(n):
        if t % width == 0:
            checkpoints.append(alpha)
        alpha, total = forward(alpha, t)
        if total <= 0:
            raise ValueError("the evidence has probability 0 under these tables")
        log_z += float(np.log(total))
    marginals = np.zeros(n)
    beta = np.ones(2**width)
    for segment in reversed(range(len(checkpoints))):
        start, stop = segment * width, min((segment + 1) * width, n)
        alphas, alpha = [], checkpoints[segment]
        for t in range(start, stop):
            alpha, _ = forward(alpha, t)
            alphas.append(alpha)
        for t in reversed(range(start, stop)):
            joint = (alphas[t - start] * beta).reshape(-1, 2).sum(axis=0)
            marginals[t] = joint[1] / joint.sum()
            beta = backward(beta, t)
    marginals = marginals.reshape(rows, cols)
    return (marginals.T if transposed else marginals), log_z


def _chain_marginals(log_f) -> tuple[np.ndarray, float]:
    """A single column: node t has only its parent t - 1 ("up"); plain forward-backward."""
    n = log_f.shape[0]
    f = np.exp(log_f[:, :, :, 0])  # [t, x, up]
    alphas, alpha, log_z = [], np.array([1.0, 0.0]), 0.0
    for t in range(n):
        alpha = np.einsum("a,ca->c", alpha, f[t])
        total = alpha.sum()
        if total <= 0:
            raise ValueError("the evidence has probability 0 under these tables")
        alpha, log_z = alpha / total, log_z + float(np.log(total))
        alphas.append(alpha)
    marginals, beta = np.zeros(n), np.ones(2)
    for t in reversed(range(n)):
        joint = alphas[t] * beta
        marginals[t] = joint[1] / joint.sum()
        beta = np.einsum("ca,c->a", f[t], beta)
        beta = beta / beta.sum()
    return marginals[:, None], log_z


def grid_network_reference(data: dict) -> Reference:
    """Exact posterior marginals (mean = P(x = 1), sd = sqrt(p (1 - p))) of the latent nodes and log P(evidence)."""
    cpt = _check_tables(data["cpt"])
    evidence = _check_evidence(data.get("evidence"), cpt.shape[:2])
    if int(np.sum(evidence < 0)) <= ENUMERATION_LIMIT:
        marginals, log_z = enumerate_marginals(cpt, evidence)
    else:
        marginals, log_z = variable_elimination_marginals(cpt, evidence)
    mean, sd = {}, {}
    for i, j in zip(*np.nonzero(evidence < 0)):
        p = float(marginals[i, j])
        mean[site_name(i, j)] = np.asarray(p)
        sd[site_name(i, j)] = np.asarray(np.sqrt(max(p * (1.0 - p), 0.0)))
    return Reference(mean=mean, sd=sd, log_z=log_z)


GRID_NETWORK = ZooModel(
    name="grid_network",
    description="Binary grid Bayesian network (UAI 2008 grid family) with random tables and evidence; discrete.",
    model=grid_network_model,
    make_data=grid_network_data,
    reference=grid_network_reference,
    tags=("discrete",),
)
