"""Legendre functions (mirror maps) for Bregman proximal Langevin Monte Carlo.

A Legendre function phi is strictly convex, differentiable on the interior of its domain, and its gradient blows
up at the boundary; grad phi maps the domain one-to-one onto the dual space and grad phi* = (grad phi)^{-1} maps
back. It defines the Bregman divergence

    D_phi(x, y) = phi(x) - phi(y) - <grad phi(y), x - y>,

which replaces |x - y|^2 / 2 in proximity operators, Moreau envelopes and Langevin steps (Bauschke, Dao and
Lindstrom, SIAM J. Optim. 2018; Lau and Liu, ICML 2022). Separable choices, per coordinate:

    name                 phi(x)                                   grad phi        grad phi*          phi''
    euclidean            x^2 / 2                                  x               y                  1
    hyperbolic_entropy   z asinh(z / b) - sqrt(z^2 + b^2), z=x-c  asinh(z / b)    c + b sinh(y)      1 / sqrt(z^2 + b^2)
    boltzmann_shannon    x log x - x                   on x > 0   log x           exp(y)             1 / x
    fermi_dirac [a, b]   w (u log u + (1-u) log(1-u)), u=(x-a)/w  logit u         a + w sigmoid(y)   w / ((x-a)(b-x))
    burg                 -log x                        on x > 0   -1 / x          -1 / y (y < 0)     1 / x^2

(w = b - a). The entropic map of the simplex is the non-separable choice on the first K - 1 coordinates of a
probability vector, x_K = 1 - sum(x):

    phi(x) = sum_{i <= K} x_i log x_i,   grad phi(x)_i = log x_i - log x_K,   grad phi*(y) = softmax((y, 0))[:K-1],
    phi''(x) = diag(1 / x_i) + 11^T / x_K,   det phi''(x) = 1 / prod_{i <= K} x_i,   phi''(x)^{-1} = diag(x) - x x^T.

Each object exposes the same small interface, used by the prox operators and the kernels:
``value`` (phi summed), ``grad``, ``grad_conj``, ``hess_matvec``, ``hess_inv_matvec``, ``hess_sqrt_matvec``
(a matrix A with A A^T = phi''), ``hess_inv_quad`` (r^T phi''^{-1} r), ``hess_log_det``, ``divergence``,
``in_domain`` and ``dual_in_domain`` (scalar booleans). Separable maps add ``hess_diag``, ``inv_hess_diag``,
``in_domain_elementwise`` and the domain bounds ``lower``/``upper``. Methods take one flat position (vmap for
many). ``BlockLegendre`` glues maps over slices of
one flat vector, which is how a model's sites (real, positive, interval, simplex) share one chain.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "LEGENDRE_NAMES",
    "BlockLegendre",
    "BoltzmannShannon",
    "Burg",
    "BurgSimplex",
    "EntropicSimplex",
    "Euclidean",
    "FermiDirac",
    "HyperbolicEntropy",
    "LegendreSpec",
    "SeparableLegendre",
    "block_legendre",
    "make_legendre",
]


class SeparableLegendre:
    """A Legendre function that acts coordinate by coordinate.

    Subclasses define ``phi`` (elementwise), ``grad``, ``grad_conj``, ``hess_diag``, ``inv_hess_diag`` and the domain
    bounds ``lower`` / ``upper`` (``-inf`` / ``inf`` when unbounded). Parameters may be scalars or arrays that
    broadcast against the position.
    """

    name = "separable"
    separable = True
    lower = -np.inf
    upper = np.inf

    # -- to define in subclasses -------------------------------------------------------------------------------
    def phi(self, x):
        raise NotImplementedError

    def grad(self, x):
        raise NotImplementedError

    def grad_conj(self, y):
        raise NotImplementedError

    def hess_diag(self, x):
        raise NotImplementedError

    def inv_hess_diag(self, x):
        """1 / phi''(x), finite (often zero) at a finite domain bound."""
        raise NotImplementedError

    # -- shared ------------------------------------------------------------------------------------------------
    def value(self, x):
        return jnp.sum(self.phi(x))

    def in_domain_elementwise(self, x):
        inside = jnp.isfinite(x)
        if np.isfinite(self.lower):
            inside = inside & (x > self.lower)
        if np.isfinite(self.upper):
            inside = inside & (x < self.upper)
        return inside

    def in_domain(self, x):
        return jnp.all(self.in_domain_elementwise(x))

    def dual_in_domain(self, y):
        return jnp.all(jnp.isfinite(y))

    def hess_matvec(self, x, v):
        return self.hess_diag(x) * v

    def hess_inv_matvec(self, x, v):
        return self.inv_hess_diag(x) * v

    def hess_sqrt_matvec(self, x, v):
        return jnp.sqrt(self.hess_diag(x)) * v

    def hess_inv_quad(self, x, r):
        return jnp.sum(r * r * self.inv_hess_diag(x))

    def hess_log_det(self, x):
        return -jnp.sum(jnp.log(self.inv_hess_diag(x)))

    def divergence_elementwise(self, x, y):
        return self.phi(x) - self.phi(y) - self.grad(y) * (x - y)

    def divergence(self, x, y):
        """D_phi(x, y) = phi(x) - phi(y) - <grad phi(y), x - y>."""
        return jnp.sum(self.divergence_elementwise(x, y))

    def __repr__(self):
        return f"{type(self).__name__}({self.name})"


class Euclidean(SeparableLegendre):
    """phi(x) = x^2 / 2: the identity mirror map; Bregman tools reduce to their Euclidean versions."""

    name = "euclidean"

    def phi(self, x):
        return 0.5 * x * x

    def grad(self, x):
        return x

    def grad_conj(self, y):
        return y

    def hess_diag(self, x):
        return jnp.ones_like(x)

    def inv_hess_diag(self, x):
        return jnp.ones_like(x)

    # Exact identities, so that Euclidean BMUMLA is MYULA step for step.
    def hess_matvec(self, x, v):
        return v

    def hess_inv_matvec(self, x, v):
        return v

    def hess_sqrt_matvec(self, x, v):
        return v

    def hess_inv_quad(self, x, r):
        return jnp.sum(r * r)

    def hess_log_det(self, x):
        return jnp.zeros((), dtype=jnp.result_type(x))


class HyperbolicEntropy(SeparableLegendre):
    """phi(x) = z asinh(z / beta) - sqrt(z^2 + beta^2) with z = x - center, on the real line.

    Quadratic (curvature 1 / beta) near the centre and linear far from it, so the Bregman geometry is Euclidean at
    scale beta around the centre and logarithmic beyond: the natural map for L1 terms centred at ``center``.
    ``grad_conj`` uses sinh, which overflows for duals above ~89 in float32; such a point is non-finite and the
    kernels treat it as a divergence.
    """

    name = "hyperbolic_entropy"

    def __init__(self, beta=1.0, center=0.0):
        self.beta = beta
        self.center = center

    def phi(self, x):
        z = x - self.center
        return z * jnp.arcsinh(z / self.beta) - jnp.hypot(z, self.beta)

    def grad(self, x):
        return jnp.arcsinh((x - self.center) / self.beta)

    def grad_conj(self, y):
        return self.center + self.beta * jnp.sinh(y)

    def hess_diag(self, x):
        return 1.0 / jnp.hypot(x - self.center, self.beta)

    def inv_hess_diag(self, x):
        return jnp.hypot(x - self.center, self.beta)


class BoltzmannShannon(SeparableLegendre):
    """phi(x) = x log x - x on x > 0 (negative Shannon entropy): the map for positive parameters."""

    name = "boltzmann_shannon"
    lower = 0.0

    def phi(self, x):
        return jax.scipy.special.xlogy(x, x) - x

    def grad(self, x):
        return jnp.log(x)

    def grad_conj(self, y):
        return jnp.exp(y)

    def hess_diag(self, x):
        return 1.0 / x

    def inv_hess_diag(self, x):
        return x

    def hess_log_det(self, x):
        return -jnp.sum(jnp.log(x))


class FermiDirac(SeparableLegendre):
    """phi(x) = w (u log u + (1 - u) log(1 - u)), u = (x - lower) / w, w = upper - lower: the map for an interval.

    Scaled so that grad phi(x) = logit(u) = log(x - lower) - log(upper - x).
    """

    name = "fermi_dirac"

    def __init__(self, lower=0.0, upper=1.0):
        self.lower = lower
        self.upper = upper

    @property
    def width(self):
        return self.upper - self.lower

    def phi(self, x):
        xlogy = jax.scipy.special.xlogy
        w = self.width
        u = (x - self.lower) / w
        v = (self.upper - x) / w
        return w * (xlogy(u, u) + xlogy(v, v))

    def grad(self, x):
        return jnp.log(x - self.lower) - jnp.log(self.upper - x)

    def grad_conj(self, y):
        # Measure from the nearer bound so that points close to either end keep their precision.
        w = self.width
        return jnp.where(y < 0, self.lower + w * jax.nn.sigmoid(y), self.upper - w * jax.nn.sigmoid(-y))

    def hess_diag(self, x):
        return self.width / ((x - self.lower) * (self.upper - x))

    def inv_hess_diag(self, x):
        return (x - self.lower) * (self.upper - x) / self.width

    def in_domain_elementwise(self, x):
        return jnp.isfinite(x) & (x > self.lower) & (x < self.upper)


class Burg(SeparableLegendre):
    """phi(x) = -log x on x > 0 (Burg entropy).

    Its dual domain is y < 0 only: Gaussian noise in a Langevin step can leave it, which the kernels count as a
    divergence. Prefer Boltzmann-Shannon for positive parameters; Burg is here for its prox closed forms.
    """

    name = "burg"
    lower = 0.0

    def phi(self, x):
        return -jnp.log(x)

    def grad(self, x):
        return -1.0 / x

    def grad_conj(self, y):
        return -1.0 / y

    def hess_diag(self, x):
        return 1.0 / (x * x)

    def inv_hess_diag(self, x):
        return x * x

    def dual_in_domain(self, y):
        return jnp.all(jnp.isfinite(y) & (y < 0))


class EntropicSimplex:
    """The entropic map of the probability simplex, on the first K - 1 coordinates (x_K = 1 - sum(x)).

    Non-separable: phi''(x) = diag(1 / x) + 11^T / x_K. Its inverse is the multinomial covariance
    diag(x) - x x^T, its determinant 1 / prod_{i<=K} x_i, and A = diag(x)^{-1/2} (I + c s s^T) with s = sqrt(x),
    c = 1 / (sqrt(x_K) (1 + sqrt(x_K))) satisfies A A^T = phi''(x).
    """

    name = "entropic_simplex"
    separable = False

    @staticmethod
    def last(x):
        return 1.0 - jnp.sum(x, axis=-1, keepdims=True)

    def phi(self, x):
        xlogy = jax.scipy.special.xlogy
        x_last = self.last(x)
        return jnp.sum(xlogy(x, x)) + jnp.sum(xlogy(x_last, x_last))

    def value(self, x):
        return self.phi(x)

    def grad(self, x):
        return jnp.log(x) - jnp.log(self.last(x))

    def grad_conj(self, y):
        zero = jnp.zeros(y.shape[:-1] + (1,), dtype=y.dtype)
        log_normaliser = jax.nn.logsumexp(jnp.concatenate([y, zero], axis=-1), axis=-1, keepdims=True)
        return jnp.exp(y - log_normaliser)

    def hess_matvec(self, x, v):
        return v / x + jnp.sum(v) / self.last(x)

    def hess_inv_matvec(self, x, v):
        return x * v - x * jnp.sum(x * v)

    def hess_sqrt_matvec(self, x, v):
        root_last = jnp.sqrt(self.last(x))
        c = 1.0 / (root_last * (1.0 + root_last))
        root_x = jnp.sqrt(x)
        return v / root_x + c * jnp.sum(root_x * v)

    def hess_inv_quad(self, x, r):
        return jnp.sum(x * r * r) - jnp.sum(x * r) ** 2

    def hess_log_det(self, x):
        return -jnp.sum(jnp.log(x)) - jnp.sum(jnp.log(self.last(x)))

    def divergence(self, x, y):
        return self.phi(x) - self.phi(y) - jnp.sum(self.grad(y) * (x - y))

    def in_domain(self, x):
        return jnp.all(jnp.isfinite(x) & (x > 0)) & jnp.all(self.last(x) > 0)

    def dual_in_domain(self, y):
        return jnp.all(jnp.isfinite(y))

    def __repr__(self):
        return "EntropicSimplex()"


class BurgSimplex:
    """The log-barrier (Burg) map of the simplex, on the first K - 1 coordinates (x_K = 1 - sum(x)).

    phi(x) = -sum_{i<=K} log x_i, grad phi(x)_i = 1/x_K - 1/x_i, phi''(x) = diag(1/x_i^2) + 11^T / x_K^2. Its
    inverse is diag(x^2) - x^2 (x^2)^T / sum_{i<=K} x_i^2 and its log-determinant
    -2 sum_{i<=K} log x_i + log sum_{i<=K} x_i^2. The dual domain is all of R^{K-1}: grad phi*(y)_i = 1 / (mu - y_i)
    with mu > max(0, y) the root of sum_i 1/(mu - y_i) + 1/mu = 1 (convex and decreasing in mu, so Newton steps
    from mu = max(0, y) + 1 increase monotonically to it). Near a face x_i -> 0 the noise of a Langevin step scales
    like x_i, so the chain moves on a log scale there: this is the map that mixes into sparse corners (Dirichlet
    concentrations below 1), where the entropic map's steps shrink like sqrt(x_i) against a drift growing like 1/x_i.
    A = diag(1/x) (I + c x x^T) with c = 1 / (x_K (R + x_K)), R^2 = sum_{i<=K} x_i^2, satisfies A A^T = phi''(x).
    """

    name = "burg_simplex"
    separable = False
    newton_iterations = 40

    @staticmethod
    def last(x):
        return 1.0 - jnp.sum(x, axis=-1, keepdims=True)

    def value(self, x):
        return -jnp.sum(jnp.log(x)) - jnp.sum(jnp.log(self.last(x)))

    def grad(self, x):
        return 1.0 / self.last(x) - 1.0 / x

    def grad_conj(self, y):
        shift = jnp.maximum(jnp.max(y, axis=-1, keepdims=True), 0.0)
        gaps = shift - y  # >= 0; mu = shift + s with s > 0

        def body(_, s):
            inv = 1.0 / (s + gaps)
            inv_last = 1.0 / (s + shift)
            h = jnp.sum(inv, axis=-1, keepdims=True) + inv_last - 1.0
            dh = -jnp.sum(inv * inv, axis=-1, keepdims=True) - inv_last * inv_last
            return s - h / dh

        s = jax.lax.fori_loop(0, self.newton_iterations, body, jnp.ones_like(shift))
        return 1.0 / (s + gaps)

    def _sum_squares(self, x):
        return jnp.sum(x * x) + jnp.sum(self.last(x) ** 2)

    def hess_matvec(self, x, v):
        return v / (x * x) + jnp.sum(v) / self.last(x) ** 2

    def hess_inv_matvec(self, x, v):
        x2 = x * x
        return x2 * v - x2 * jnp.sum(x2 * v) / self._sum_squares(x)

    def hess_sqrt_matvec(self, x, v):
        x_last = self.last(x)
        c = 1.0 / (x_last * (jnp.sqrt(self._sum_squares(x)) + x_last))
        return v / x + c * jnp.sum(x * v)

    def hess_inv_quad(self, x, r):
        x2 = x * x
        return jnp.sum(x2 * r * r) - jnp.sum(x2 * r) ** 2 / self._sum_squares(x)

    def hess_log_det(self, x):
        return -2.0 * (jnp.sum(jnp.log(x)) + jnp.sum(jnp.log(self.last(x)))) + jnp.log(self._sum_squares(x))

    def divergence(self, x, y):
        return self.value(x) - self.value(y) - jnp.sum(self.grad(y) * (x - y))

    def in_domain(self, x):
        return jnp.all(jnp.isfinite(x) & (x > 0)) & jnp.all(self.last(x) > 0)

    def dual_in_domain(self, y):
        return jnp.all(jnp.isfinite(y))

    def __repr__(self):
        return "BurgSimplex()"


_FACTORIES = {
    "euclidean": (Euclidean, ()),
    "hyperbolic_entropy": (HyperbolicEntropy, ("beta", "center")),
    "boltzmann_shannon": (BoltzmannShannon, ()),
    "fermi_dirac": (FermiDirac, ("lower", "upper")),
    "burg": (Burg, ()),
    "entropic_simplex": (EntropicSimplex, ()),
    "burg_simplex": (BurgSimplex, ()),
}
LEGENDRE_NAMES = tuple(_FACTORIES)


def make_legendre(name: str, **params: Any):
    """Build a Legendre function by name.

    ``make_legendre("hyperbolic_entropy", beta=1.0, center=0.0)``, ``make_legendre("fermi_dirac", lower=0, upper=1)``,
    ``make_legendre("boltzmann_shannon")``, ``make_legendre("entropic_simplex")``, ``make_legendre("euclidean")``,
    ``make_legendre("burg")``. Parameters may be scalars or per-coordinate arrays.
    """
    if name not in _FACTORIES:
        raise ValueError(f"legendre name {name!r} is unknown; valid names are {', '.join(LEGENDRE_NAMES)}")
    factory, allowed = _FACTORIES[name]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        valid = ", ".join(allowed) if allowed else "none"
        raise ValueError(f"legendre {name!r} got unknown parameter(s) {unknown}; its parameters are: {valid}")
    if name == "hyperbolic_entropy" and "beta" in params and _concrete(params["beta"]) is not None:
        if not np.all(_concrete(params["beta"]) > 0):
            raise ValueError(
                f"hyperbolic_entropy: beta must be > 0, got {params['beta']!r}; use a scale near the "
                "target's spread per coordinate"
            )
    if name == "fermi_dirac":
        lower, upper = params.get("lower", 0.0), params.get("upper", 1.0)
        lo, hi = _concrete(lower), _concrete(upper)
        if (
            lo is not None
            and hi is not None
            and not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)) and np.all(lo < hi))
        ):
            raise ValueError(f"fermi_dirac: needs finite lower < upper, got lower={lower!r}, upper={upper!r}")
    return factory(**params)


class LegendreSpec(NamedTuple):
    """One block of a flat vector: coordinates ``start:stop`` use the Legendre function ``name`` with ``params``."""

    name: str
    start: int
    stop: int
    params: Mapping[str, Any] | None = None


class BlockLegendre:
    """Legendre functions glued over contiguous slices of one flat vector (a direct sum, so still Legendre).

    ``blocks`` is a tuple of ``(start, stop, legendre)`` covering ``0..dim`` in order. All methods take and return
    flat vectors of length ``dim``; scalar results (value, log-det, domain checks) are sums / conjunctions.
    """

    def __init__(self, blocks: Sequence[tuple[int, int, Any]], dim: int | None = None):
        blocks = tuple((int(a), int(b), leg) for a, b, leg in blocks)
        if not blocks:
            raise ValueError("BlockLegendre needs at least one block")
        expected = 0
        for start, stop, leg in blocks:
            if start != expected or stop <= start:
                raise ValueError(
                    f"blocks must cover 0..dim contiguously and in order; block {leg!r} spans {start}:{stop} but "
                    f"the next free coordinate is {expected}"
                )
            expected = stop
        if dim is not None and expected != dim:
            raise ValueError(f"blocks cover 0..{expected} but dim is {dim}; add a block for the missing coordinates")
        self.blocks = blocks
        self.dim = expected
        self.separable = all(leg.separable for _, _, leg in blocks)
        self.name = "block"

    def _map(self, method, *arrays):
        parts = [getattr(leg, method)(*(a[..., s:e] for a in arrays)) for s, e, leg in self.blocks]
        return parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=-1)

    def _sum(self, method, *arrays):
        total = 0.0
        for s, e, leg in self.blocks:
            total = total + getattr(leg, method)(*(a[..., s:e] for a in arrays))
        return total

    def _all(self, method, *arrays):
        ok = jnp.asarray(True)
        for s, e, leg in self.blocks:
            ok = ok & getattr(leg, method)(*(a[..., s:e] for a in arrays))
        return ok

    def value(self, x):
        return self._sum("value", x)

    def grad(self, x):
        return self._map("grad", x)

    def grad_conj(self, y):
        return self._map("grad_conj", y)

    def hess_matvec(self, x, v):
        return self._map("hess_matvec", x, v)

    def hess_inv_matvec(self, x, v):
        return self._map("hess_inv_matvec", x, v)

    def hess_sqrt_matvec(self, x, v):
        return self._map("hess_sqrt_matvec", x, v)

    def hess_inv_quad(self, x, r):
        return self._sum("hess_inv_quad", x, r)

    def hess_log_det(self, x):
        return self._sum("hess_log_det", x)

    def divergence(self, x, y):
        return self._sum("divergence", x, y)

    def in_domain(self, x):
        return self._all("in_domain", x)

    def dual_in_domain(self, y):
        return self._all("dual_in_domain", y)

    def hess_diag(self, x):
        if not self.separable:
            raise ValueError(
                "hess_diag: this BlockLegendre has a non-separable (entropic_simplex) block; use hess_matvec instead"
            )
        return self._map("hess_diag", x)

    def __repr__(self):
        inner = ", ".join(f"{s}:{e} {leg!r}" for s, e, leg in self.blocks)
        return f"BlockLegendre({inner})"


def block_legendre(specs: Sequence[Any], dim: int | None = None, l1_center=None, beta=None) -> BlockLegendre:
    """Build a ``BlockLegendre`` from block specs (``LegendreSpec`` or any object with name/start/stop/params).

    A spec's params (``beta``, ``center``, ``lower``, ``upper``) are scalars or arrays of the block's length.
    Hyperbolic-entropy blocks are centred at ``l1_center[start:stop]`` unless their params give a centre,
    so the L1 prox has a closed form; ``beta`` (scalar or array over the flat vector) overrides their beta.
    """
    blocks = []
    for spec in specs:
        name, start, stop = spec.name, int(spec.start), int(spec.stop)
        params = dict(spec.params or {})
        if name == "hyperbolic_entropy":
            if "center" not in params and l1_center is not None:
                params["center"] = _slice_or_scalar(l1_center, start, stop)
            if beta is not None:
                params["beta"] = _slice_or_scalar(beta, start, stop)
        if name == "entropic_simplex" and stop - start < 1:
            raise ValueError(
                f"entropic_simplex block {start}:{stop} is empty; a simplex of K categories uses K-1 coordinates"
            )
        blocks.append((start, stop, make_legendre(name, **params)))
    return BlockLegendre(blocks, dim)


def _slice_or_scalar(value, start, stop):
    if np.ndim(value) == 0:
        return value
    return value[start:stop]


def _concrete(value):
    """The value as a NumPy array when it is known at trace time, else None."""
    try:
        return np.asarray(value)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError, TypeError):
        return None
