"""Legendre functions, Bregman proximity operators and envelopes (samplax.kernels.bregman), checked in float64.

Exact answers come from independent NumPy formulas for phi and brute-force 1-D minimisation (a grid, then bounded
Brent with xatol 1e-14); derivatives from jax.jacfwd and central differences. Tolerances are numerical (1e-6 for the
prox points, as the issue asks), not statistical.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import minimize, minimize_scalar

from samplax.kernels.bregman import (
    BlockLegendre,
    LegendreSpec,
    block_legendre,
    bplmc,
    bregman_moreau_envelope,
    make_legendre,
    prox_box,
    prox_l1_left,
    prox_l1_right,
    prox_linear_left,
    prox_linear_right,
    prox_simplex,
)

# -- independent NumPy definitions of phi and grad phi ----------------------------------------------------------------


def np_phi(name, params):
    if name == "euclidean":
        return (lambda x: 0.5 * x * x), (lambda x: x), (-np.inf, np.inf)
    if name == "hyperbolic_entropy":
        b, m = params["beta"], params.get("center", 0.0)
        return (
            (lambda x: (x - m) * np.arcsinh((x - m) / b) - np.sqrt((x - m) ** 2 + b * b)),
            (lambda x: np.arcsinh((x - m) / b)),
            (-np.inf, np.inf),
        )
    if name == "boltzmann_shannon":
        return (lambda x: x * np.log(x) - x), np.log, (0.0, np.inf)
    if name == "burg":
        return (lambda x: -np.log(x)), (lambda x: -1.0 / x), (0.0, np.inf)
    if name == "fermi_dirac":
        a, b = params["lower"], params["upper"]
        w = b - a

        def phi(x):
            u, v = (x - a) / w, (b - x) / w
            return w * (u * np.log(u) + v * np.log(v))

        return phi, (lambda x: np.log(x - a) - np.log(b - x)), (a, b)
    raise AssertionError(name)


def brute_argmin(objective, lo, hi):
    """Global minimiser of a 1-D function on (lo, hi): a 4001-point grid, then Brent between the grid neighbours."""
    grid = np.linspace(lo, hi, 4001)
    with np.errstate(all="ignore"):
        values = np.array([objective(g) for g in grid])
    values[~np.isfinite(values)] = np.inf
    i = int(np.argmin(values))
    left, right = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    res = minimize_scalar(objective, bounds=(left, right), method="bounded", options={"xatol": 1e-14})
    candidates = [res.x, grid[i]]
    return min(candidates, key=objective)


def search_interval(x, target, lower, upper):
    """An interval inside the domain holding x and target (clipped into the domain)."""
    width = max(abs(x - target), 1e-3) * 3 + 1.0
    lo, hi = min(x, target) - width, max(x, target) + width
    lo = max(lo, lower + 1e-15 * max(1.0, abs(lower)) if np.isfinite(lower) else lo)
    hi = min(hi, upper - 1e-15 * max(1.0, abs(upper)) if np.isfinite(upper) else hi)
    if np.isfinite(lower):
        lo = max(lo, lower) + 1e-300
    return lo, hi


CASES = [
    # (map, params, centre sampler, x sampler)
    ("euclidean", {}, "random", "real"),
    ("hyperbolic_entropy", {"beta": 0.7, "center": 0.3}, "own", "real"),
    ("hyperbolic_entropy", {"beta": 1.3}, "random", "real"),  # not centred: the Newton fallback on the right
    ("boltzmann_shannon", {}, "nonpositive", "positive"),  # linear term: closed forms
    ("boltzmann_shannon", {}, "positive", "positive"),  # Newton fallback on the right
    ("burg", {}, "nonpositive", "positive"),
    ("burg", {}, "positive", "positive"),
    ("fermi_dirac", {"lower": -1.0, "upper": 2.0}, "below", "interval"),
    ("fermi_dirac", {"lower": -1.0, "upper": 2.0}, "above", "interval"),
    ("fermi_dirac", {"lower": -1.0, "upper": 2.0}, "inside", "interval"),
]


def sample_case(rng, case, n=16):
    name, params, centre_kind, x_kind = case
    if x_kind == "real":
        x = rng.normal(0, 2.0, n)
    elif x_kind == "positive":
        x = np.exp(rng.normal(0, 1.5, n))
    else:
        x = rng.uniform(-1.0, 2.0, n)
    t = rng.uniform(0.02, 1.8, n) if name == "hyperbolic_entropy" else rng.uniform(0.02, 1.2, n)
    centre = {
        "random": lambda: rng.normal(0, 1.0, n),
        "own": lambda: np.full(n, params.get("center", 0.0)),
        "nonpositive": lambda: -rng.uniform(0, 1, n),
        "positive": lambda: np.exp(rng.normal(0, 1, n)),
        "below": lambda: rng.uniform(-3, -1, n),
        "above": lambda: rng.uniform(2, 4, n),
        "inside": lambda: rng.uniform(-0.9, 1.9, n),
    }[centre_kind]()
    # put a few points in the dead zone around the centre
    x[:3] = np.where(np.isfinite(centre[:3]), centre[:3], x[:3]) + 1e-3 * rng.normal(size=3)
    if x_kind == "positive":
        x = np.abs(x) + 1e-3
    if x_kind == "interval":
        x = np.clip(x, -0.999, 1.999)
    return x, t, centre


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[2]}")
def test_l1_prox_matches_brute_force(case, side):
    """Every L1 prox (closed form or Newton fallback) equals the brute-force minimiser of t|y-c| + D to 1e-6."""
    name, params, _, _ = case
    rng = np.random.default_rng(abs(hash((name, case[2], side))) % 2**32)
    x, t, c = sample_case(rng, case)
    phi, gphi, (lower, upper) = np_phi(name, params)
    with jax.enable_x64(True):
        leg = make_legendre(name, **params)
        op = prox_l1_left if side == "left" else prox_l1_right
        got = np.asarray(op(leg, jnp.asarray(x), jnp.asarray(t), jnp.asarray(c)))
    for xi, ti, ci, yi in zip(x, t, c, got):

        def objective(y, xi=xi, ti=ti, ci=ci):
            d = phi(y) - phi(xi) - gphi(xi) * (y - xi) if side == "left" else phi(xi) - phi(y) - gphi(y) * (xi - y)
            return ti * abs(y - ci) + d

        target = min(max(ci, lower), upper)
        lo, hi = search_interval(xi, target, lower, upper)
        best = brute_argmin(objective, lo, hi)
        assert np.isfinite(yi)
        assert abs(yi - best) <= 1e-6 * max(1.0, abs(best)), (xi, ti, ci, yi, best)
        assert objective(yi) <= objective(best) + 1e-10


def test_hyperbolic_left_prox_is_exactly_zero_in_dead_zone():
    """Pitfall 1: for |x| <= beta sinh(t) the left prox is exactly the centre (not sqrt(x^2 + beta^2) - beta)."""
    with jax.enable_x64(True):
        leg = make_legendre("hyperbolic_entropy", beta=2.0)
        t = 0.3
        edge = 2.0 * np.sinh(t)
        x = jnp.linspace(-2 * edge, 2 * edge, 41)
        y = prox_l1_left(leg, x, t)
        dead = np.abs(np.asarray(x)) <= edge * (1 - 1e-12)
        alive = np.abs(np.asarray(x)) > edge * (1 + 1e-12)
        assert dead.sum() > 10 and alive.sum() > 10
        assert np.all(np.asarray(y)[dead] == 0.0)
        assert np.all(np.asarray(y)[alive] != 0.0)
        # The closed form of the table: sign(x) beta sinh(max(asinh(|x|/beta) - t, 0)).
        expected = np.sign(x) * 2.0 * np.sinh(np.maximum(np.arcsinh(np.abs(x) / 2.0) - t, 0.0))
        np.testing.assert_allclose(np.asarray(y), expected, atol=1e-14)


def test_table_closed_forms():
    """The closed forms listed in methods/bplmc.md, written out literally, agree with the operators (float64)."""
    rng = np.random.default_rng(1)
    x = np.exp(rng.normal(size=20))
    u = rng.uniform(0.01, 0.99, 20)
    t = 0.37
    with jax.enable_x64(True):
        bs, burg = make_legendre("boltzmann_shannon"), make_legendre("burg")
        fd = make_legendre("fermi_dirac")
        np.testing.assert_allclose(prox_l1_left(bs, x, t), x * np.exp(-t), rtol=1e-13)
        np.testing.assert_allclose(prox_l1_right(bs, x, t), x / (1 + t), rtol=1e-13)
        np.testing.assert_allclose(prox_l1_left(burg, x, t), x / (1 + t * x), rtol=1e-13)
        np.testing.assert_allclose(prox_l1_right(burg, x, t), (-1 + np.sqrt(1 + 4 * t * x)) / (2 * t), rtol=1e-12)
        np.testing.assert_allclose(prox_l1_left(fd, u, t), u * np.exp(-t) / (u * np.exp(-t) + 1 - u), rtol=1e-13)
        hyp = make_legendre("hyperbolic_entropy", beta=1.0)
        z = rng.normal(0, 2, 20)
        for tt in (0.2, 0.8):
            expected = np.sign(z) * np.maximum(0, (np.abs(z) - tt * np.sqrt(z**2 + 1 - tt**2)) / (1 - tt**2))
            np.testing.assert_allclose(prox_l1_right(hyp, z, tt), expected, atol=1e-12)
        eu = make_legendre("euclidean")
        np.testing.assert_allclose(prox_l1_left(eu, z, t), np.sign(z) * np.maximum(np.abs(z) - t, 0), atol=1e-15)


LINEAR_CASES = [
    ("euclidean", {}, (-2.0, 2.0)),
    ("hyperbolic_entropy", {"beta": 0.8, "center": -0.2}, (-0.9, 0.9)),
    ("boltzmann_shannon", {}, (-0.8, 2.0)),
    ("burg", {}, (0.0, 2.0)),
    ("fermi_dirac", {"lower": 0.0, "upper": 3.0}, (-2.0, 2.0)),
]


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("case", LINEAR_CASES, ids=lambda c: c[0])
def test_linear_prox_matches_brute_force(case, side):
    """Prox of a linear term s*y, left and right, equals the brute-force minimiser of s y + D to 1e-6."""
    name, params, (s_lo, s_hi) = case
    rng = np.random.default_rng(7)
    phi, gphi, (lower, upper) = np_phi(name, params)
    n = 12
    if np.isfinite(lower) and np.isfinite(upper):
        x = rng.uniform(lower + 0.05, upper - 0.05, n)
    elif np.isfinite(lower):
        x = np.exp(rng.normal(0, 1, n))
    else:
        x = rng.normal(0, 2, n)
    s = rng.uniform(s_lo, s_hi, n)
    if name == "burg" and side == "left":
        s = np.minimum(s, 0.9 / x)  # the shifted dual -1/x - s must stay negative
    with jax.enable_x64(True):
        leg = make_legendre(name, **params)
        op = prox_linear_left if side == "left" else prox_linear_right
        got = np.asarray(op(leg, jnp.asarray(x), jnp.asarray(s)))
    for xi, si, yi in zip(x, s, got):

        def objective(y, xi=xi, si=si):
            d = phi(y) - phi(xi) - gphi(xi) * (y - xi) if side == "left" else phi(xi) - phi(y) - gphi(y) * (xi - y)
            return si * y + d

        lo = lower + 1e-300 if np.isfinite(lower) else xi - 60.0
        hi = upper - 1e-12 if np.isfinite(upper) else xi + 60.0 + 20 * abs(xi)
        best = brute_argmin(objective, lo, hi)
        assert abs(yi - best) <= 1e-6 * max(1.0, abs(best)), (xi, si, yi, best)


def test_linear_prox_domain_of_validity():
    """Right linear prox without a minimiser: ValueError for known slopes, NaN when traced."""
    with jax.enable_x64(True):
        bs, burg, hyp = make_legendre("boltzmann_shannon"), make_legendre("burg"), make_legendre("hyperbolic_entropy")
        with pytest.raises(ValueError, match="slope > -1"):
            prox_linear_right(bs, jnp.ones(2), jnp.array([-1.5, 0.1]))
        with pytest.raises(ValueError, match="slope >= 0"):
            prox_linear_right(burg, jnp.ones(2), -0.1)
        with pytest.raises(ValueError, match=r"\|slope\| < 1"):
            prox_linear_right(hyp, jnp.ones(2), 1.0)
        traced = jax.jit(lambda s: prox_linear_right(bs, jnp.ones(2), s))(jnp.array([-1.5, 0.1]))
        assert np.isnan(traced[0]) and np.isfinite(traced[1])
        # Left prox with Burg: no minimiser when -1/x - s >= 0.
        assert np.isnan(prox_linear_left(burg, jnp.array([1.0]), jnp.array([-2.0]))[0])


@pytest.mark.parametrize("name", ["boltzmann_shannon", "fermi_dirac", "hyperbolic_entropy"])
@pytest.mark.parametrize("side", ["left", "right"])
def test_box_indicator_prox_is_clipping(name, side):
    """Bregman prox (either side) of the indicator of [a, b] is clip(x, a, b): brute force over [a, b]."""
    params = {"fermi_dirac": {"lower": 0.0, "upper": 1.0}, "hyperbolic_entropy": {"beta": 1.0}}.get(name, {})
    phi, gphi, (lower, upper) = np_phi(name, params)
    rng = np.random.default_rng(3)
    a, b = (0.2, 0.6) if name == "fermi_dirac" else (0.5, 2.0)
    x = rng.uniform(0.05, 0.95, 10) if name == "fermi_dirac" else rng.uniform(0.05, 4.0, 10)
    got = np.asarray(prox_box(jnp.asarray(x), a, b))
    for xi, yi in zip(x, got):

        def objective(y, xi=xi):
            return phi(y) - phi(xi) - gphi(xi) * (y - xi) if side == "left" else phi(xi) - phi(y) - gphi(y) * (xi - y)

        best = brute_argmin(objective, a, b)
        assert abs(yi - best) <= 1e-6
    with pytest.raises(ValueError, match="lower <= upper"):
        prox_box(jnp.ones(2), 1.0, 0.0)


@pytest.mark.parametrize("side", ["left", "right"])
def test_simplex_indicator_prox_is_normalisation(side):
    """Boltzmann-Shannon prox of the simplex indicator is x / sum(x): minimise D over a softmax parametrisation."""
    rng = np.random.default_rng(5)
    for _ in range(5):
        x = np.exp(rng.normal(size=3))

        def objective(theta, x=x):
            y = np.exp(theta - theta.max())
            y = y / y.sum()
            if side == "left":
                return np.sum(y * np.log(y / x) - y + x)
            return np.sum(x * np.log(x / y) - x + y)

        res = minimize(objective, np.zeros(3), method="BFGS", options={"gtol": 1e-12})
        best = np.exp(res.x - res.x.max())
        best = best / best.sum()
        np.testing.assert_allclose(np.asarray(prox_simplex(jnp.asarray(x))), best, atol=1e-6)
    assert np.isnan(np.asarray(prox_simplex(jnp.array([1.0, -1.0, 2.0])))).all()


LEGENDRES = [
    ("euclidean", {}, lambda r: r.normal(size=4)),
    ("hyperbolic_entropy", {"beta": np.array([0.5, 1.0, 2.0, 0.3]), "center": 0.2}, lambda r: r.normal(size=4)),
    ("boltzmann_shannon", {}, lambda r: np.exp(r.normal(size=4))),
    ("fermi_dirac", {"lower": -2.0, "upper": 1.0}, lambda r: r.uniform(-1.9, 0.9, 4)),
    ("burg", {}, lambda r: np.exp(r.normal(size=4))),
    ("entropic_simplex", {}, lambda r: r.dirichlet(np.ones(5))[:4]),
    ("burg_simplex", {}, lambda r: r.dirichlet(np.ones(5))[:4]),
]


@pytest.mark.parametrize("case", LEGENDRES, ids=lambda c: c[0])
def test_legendre_identities(case):
    """grad = d value, grad_conj inverts grad, and the Hessian helpers match jacfwd(grad) (matvec, inverse, square
    root A A^T = H, log-determinant, inverse quadratic form), in float64."""
    name, params, sampler = case
    rng = np.random.default_rng(11)
    with jax.enable_x64(True):
        leg = make_legendre(name, **params)

        @jax.jit
        def quantities(x, v):
            return (
                jax.jacfwd(leg.grad)(x),
                jax.vmap(lambda e: leg.hess_sqrt_matvec(x, e), out_axes=1)(jnp.eye(4)),
                jax.grad(leg.value)(x),
                leg.grad(x),
                leg.grad_conj(leg.grad(x)),
                leg.hess_matvec(x, v),
                leg.hess_inv_matvec(x, v),
                leg.hess_log_det(x),
                leg.hess_inv_quad(x, v),
            )

        for _ in range(3):
            x = jnp.asarray(sampler(rng))
            v = jnp.asarray(rng.normal(size=4))
            hess, a, dvalue, grad, roundtrip, hv, hinv_v, logdet, quad = map(np.asarray, quantities(x, v))
            np.testing.assert_allclose(dvalue, grad, rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(roundtrip, x, rtol=1e-10, atol=1e-13)
            np.testing.assert_allclose(hv, hess @ v, rtol=1e-10, atol=1e-10)
            np.testing.assert_allclose(hinv_v, np.linalg.solve(hess, v), rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(a @ a.T, hess, rtol=1e-9, atol=1e-9 * np.abs(hess).max())
            np.testing.assert_allclose(logdet, np.linalg.slogdet(hess)[1], rtol=1e-10, atol=1e-10)
            np.testing.assert_allclose(quad, v @ np.linalg.solve(hess, v), rtol=1e-9)
            assert bool(leg.in_domain(x))
            if hasattr(leg, "hess_diag"):
                np.testing.assert_allclose(leg.hess_diag(x), np.diag(hess), rtol=1e-10)


def test_domain_checks():
    with jax.enable_x64(True):
        assert not bool(make_legendre("boltzmann_shannon").in_domain(jnp.array([1.0, 0.0])))
        assert not bool(make_legendre("fermi_dirac", lower=0.0, upper=2.0).in_domain(jnp.array([2.0])))
        assert not bool(make_legendre("entropic_simplex").in_domain(jnp.array([0.5, 0.5])))
        assert not bool(make_legendre("burg_simplex").in_domain(jnp.array([0.7, 0.4])))
        assert not bool(make_legendre("burg").dual_in_domain(jnp.array([-1.0, 0.5])))
        assert not bool(make_legendre("hyperbolic_entropy").in_domain(jnp.array([jnp.inf])))
        # Extreme duals map back inside the simplex (the log-barrier dual domain is all of R^{K-1}).
        y = jnp.array([40.0, -30.0, 3.0])
        assert bool(make_legendre("burg_simplex").in_domain(make_legendre("burg_simplex").grad_conj(y)))


def test_constructor_errors():
    with pytest.raises(ValueError, match="valid names"):
        make_legendre("kullback")
    with pytest.raises(ValueError, match="beta must be > 0"):
        make_legendre("hyperbolic_entropy", beta=0.0)
    with pytest.raises(ValueError, match="lower < upper"):
        make_legendre("fermi_dirac", lower=1.0, upper=1.0)
    with pytest.raises(ValueError, match="unknown parameter"):
        make_legendre("boltzmann_shannon", beta=1.0)
    with pytest.raises(ValueError, match="contiguously"):
        block_legendre([LegendreSpec("euclidean", 0, 2), LegendreSpec("euclidean", 3, 4)])
    with pytest.raises(ValueError, match="dim is 5"):
        block_legendre([LegendreSpec("euclidean", 0, 2)], dim=5)
    with pytest.raises(ValueError, match="separable"):
        prox_l1_left(BlockLegendre([(0, 2, make_legendre("euclidean"))]), jnp.ones(2), 0.1)
    with pytest.raises(ValueError, match=">= 0"):
        prox_l1_right(make_legendre("euclidean"), jnp.ones(2), -0.1)


def _block_setup():
    specs = [
        LegendreSpec("hyperbolic_entropy", 0, 2, {"beta": 0.8}),
        LegendreSpec("euclidean", 2, 3, None),
        LegendreSpec("boltzmann_shannon", 3, 5, None),
        LegendreSpec("fermi_dirac", 5, 6, {"lower": 0.0, "upper": 2.0}),
        LegendreSpec("entropic_simplex", 6, 8, None),
    ]
    weight = np.array([1.0, 0.5, 2.0, 0.7, 0.0, 1.5, 0.0, 0.0])
    center = np.array([0.3, -0.4, 1.0, -1.0, 0.0, 1.2, 0.0, 0.0])
    x = np.array([1.1, -0.2, -0.5, 0.8, 2.0, 0.4, 0.3, 0.5])
    return specs, weight, center, x


ENVELOPE_CASES = [(name, params, sampler) for name, params, sampler in LEGENDRES if "simplex" not in name]


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("case", ENVELOPE_CASES + [("block", None, None)], ids=lambda c: c[0])
def test_envelope_gradient_matches_central_differences(case, side):
    """grad env (left: phi''(x)(x - P)/lambda; right: (grad phi(x) - grad phi(P))/lambda) equals central differences
    of env(x) = g(P) + D/lambda (h = 1e-6, float64; the envelope is C^1, so the error is O(h) near a dead-zone edge)."""
    name, params, sampler = case
    rng = np.random.default_rng(13)
    smoothing = 0.3
    with jax.enable_x64(True):
        if name == "block":
            specs, weight, center, x = _block_setup()
            leg = block_legendre(specs, dim=8, l1_center=center)
            points = [x, x + 0.01 * rng.normal(size=8) * np.r_[np.ones(6), 0, 0]]
        else:
            leg = make_legendre(name, **params)
            weight = rng.uniform(0.2, 2.0, 4)
            center = (
                np.full(4, params["center"])
                if "center" in params
                else (rng.uniform(-1.5, 0.5, 4) if name == "fermi_dirac" else rng.normal(0, 1, 4))
            )
            points = [sampler(rng) for _ in range(3)]
        env = bregman_moreau_envelope(leg, weight, center, smoothing, side)
        h = 1e-6

        @jax.jit
        def analytic_and_numeric(x):
            basis = jnp.eye(x.shape[0]) * h
            plus = jax.vmap(lambda e: env(x + e).value)(basis)
            minus = jax.vmap(lambda e: env(x - e).value)(basis)
            return env(x).grad, (plus - minus) / (2 * h)

        grad, numeric = jax.vmap(analytic_and_numeric)(jnp.asarray(np.stack(points)))
        np.testing.assert_allclose(np.asarray(grad), np.asarray(numeric), atol=2e-5, rtol=1e-5)


def test_envelope_errors_and_zero_weight_blocks():
    specs, weight, center, x = _block_setup()
    with jax.enable_x64(True):
        leg = block_legendre(specs, dim=8, l1_center=center)
        env = bregman_moreau_envelope(leg, weight, center, 0.2, "left")(jnp.asarray(x))
        # zero-weight coordinates: prox is the identity and the envelope gradient exactly zero
        assert np.all(np.asarray(env.grad)[weight == 0] == 0.0)
        assert np.all(np.asarray(env.prox)[weight == 0] == x[weight == 0])
        bad = weight.copy()
        bad[7] = 1.0
        with pytest.raises(ValueError, match="entropic simplex"):
            bregman_moreau_envelope(leg, bad, center, 0.2)
        with pytest.raises(ValueError, match="side"):
            bregman_moreau_envelope(leg, weight, center, 0.2, side="middle")
        with pytest.raises(ValueError, match="smoothing"):
            bregman_moreau_envelope(leg, weight, center, 0.0)
        with pytest.raises(ValueError, match="length 3"):
            bregman_moreau_envelope(leg, weight[:3], center, 0.2)
        with pytest.raises(ValueError, match=">= 0"):
            bregman_moreau_envelope(leg, -weight, center, 0.2)


def test_step_size_helpers():
    """relative_curvature: for f = sum x_i^2 / (2 s_i^2) under the Euclidean map it is 1 / min(s)^2; under
    Boltzmann-Shannon at x it is max_i x_i / s_i^2 (phi''^{-1} = diag(x)). default_step_size = 0.2 / (L + 1/lambda)."""
    scales = jnp.array([0.5, 1.0, 2.0])

    def f(x):
        return jnp.sum(x**2 / (2 * scales**2))

    with jax.enable_x64(True):
        x = jnp.array([1.0, 3.0, 0.5])
        euclid = bplmc.relative_curvature(f, make_legendre("euclidean"), x, num_iterations=60)
        np.testing.assert_allclose(euclid, 4.0, rtol=1e-6)
        entropic = bplmc.relative_curvature(f, make_legendre("boltzmann_shannon"), x, num_iterations=60)
        np.testing.assert_allclose(entropic, np.max(np.asarray(x / scales**2)), rtol=1e-6)
        np.testing.assert_allclose(bplmc.default_step_size(4.0, 0.1), 0.2 / 14.0)
    with pytest.raises(ValueError, match="curvature"):
        bplmc.default_step_size(0.0, None)


# -- total variation ------------------------------------------------------------------------------------------------
def test_total_variation_and_its_prox_on_a_step_image():
    """TV of a 4 x 6 image with a straight vertical edge of height 1 is 4 (one jump per row, isotropic = anisotropic
    there), and the ROF prox of t TV shifts each side towards the other by t / (pixels per row on that side), exactly:
    every row is the same 1-D problem, whose solution stays constant on each side. 25 FGP iterations (the default)
    reach it to 3e-3 (measured 1.7e-3) and 150 to 1e-5; on a random image the prox beats random perturbations of
    itself in the prox objective, and TV matches a NumPy formula."""
    from samplax.kernels.bregman.total_variation import (
        prox_total_variation,
        total_variation,
    )

    with jax.enable_x64(True):
        step = jnp.concatenate([jnp.zeros((4, 3)), jnp.ones((4, 3))], axis=1)
        assert float(total_variation(step)) == pytest.approx(4.0)
        exact = jnp.concatenate([jnp.full((4, 3), 0.1), jnp.full((4, 3), 0.9)], axis=1)
        np.testing.assert_allclose(prox_total_variation(step, 0.3), exact, atol=3e-3)
        np.testing.assert_allclose(prox_total_variation(step, 0.3, num_iterations=150), exact, atol=1e-5)
        np.testing.assert_array_equal(prox_total_variation(step, 0.0), step)

        rng = np.random.default_rng(0)
        image = rng.normal(size=(5, 6))
        dx, dy = np.zeros_like(image), np.zeros_like(image)
        dx[:-1] = image[1:] - image[:-1]
        dy[:, :-1] = image[:, 1:] - image[:, :-1]
        assert float(total_variation(jnp.asarray(image))) == pytest.approx(np.sum(np.hypot(dx, dy)), rel=1e-12)
        t = 0.4
        prox = prox_total_variation(jnp.asarray(image), t, num_iterations=300)

        def objective(y):
            return 0.5 * jnp.sum((y - image) ** 2) + t * total_variation(y)

        best = float(objective(prox))
        for scale in (1e-2, 1e-3):
            perturbed = prox + scale * rng.normal(size=(20,) + image.shape)
            assert np.all(np.asarray(jax.vmap(objective)(perturbed)) >= best - 1e-9)
