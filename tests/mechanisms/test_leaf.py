"""Leaf distributions against scipy.stats, table-driven over every registered leaf."""

import jax
import numpy as np
import pytest
import scipy.stats as st

import gendsl
from gendsl.mechanisms.distributions import DISTRIBUTIONS

# name -> (arguments in .gen, declared type, scipy frozen distribution, values to score)
CASES = {
    "normal": ("0.5, 2", "real", st.norm(0.5, 2), [-1.0, 0.3, 4.0]),
    "half_normal": ("1.5", "positive", st.halfnorm(scale=1.5), [0.1, 1.0, 3.0]),
    "cauchy": ("1, 0.5", "real", st.cauchy(1, 0.5), [-3.0, 1.0, 2.5]),
    "half_cauchy": ("2", "positive", st.halfcauchy(scale=2), [0.2, 2.0, 9.0]),
    "student_t": ("3, 1, 2", "real", st.t(3, 1, 2), [-2.0, 1.0, 6.0]),
    "exponential": ("2", "positive", st.expon(scale=0.5), [0.1, 0.5, 2.0]),
    "gamma": ("2, 3", "positive", st.gamma(2, scale=1 / 3), [0.1, 0.7, 2.0]),
    "inv_gamma": ("3, 2", "positive", st.invgamma(3, scale=2), [0.3, 1.0, 4.0]),
    "beta": ("2, 5", "unit", st.beta(2, 5), [0.05, 0.3, 0.9]),
    "lognormal": ("0.2, 0.7", "positive", st.lognorm(0.7, scale=np.exp(0.2)), [0.3, 1.2, 5.0]),
    "uniform": ("-1, 3", "real", st.uniform(-1, 4), [-0.5, 0.0, 2.9]),
    "laplace": ("1, 2", "real", st.laplace(1, 2), [-3.0, 1.0, 4.0]),
    "logistic": ("1, 2", "real", st.logistic(1, 2), [-3.0, 1.0, 4.0]),
    "bernoulli": ("0.3", "int", st.bernoulli(0.3), [0, 1, 1]),
    "bernoulli_logit": ("-0.5", "int", st.bernoulli(1 / (1 + np.exp(0.5))), [0, 1, 0]),
    "binomial": ("10, 0.3", "int", st.binom(10, 0.3), [0, 3, 10]),
    "binomial_logit": ("10, 0.5", "int", st.binom(10, 1 / (1 + np.exp(-0.5))), [1, 6, 9]),
    "poisson": ("3.5", "int", st.poisson(3.5), [0, 3, 9]),
    "poisson_log": ("1.2", "int", st.poisson(np.exp(1.2)), [0, 3, 9]),
    "negative_binomial": ("4, 2", "int", st.nbinom(2, 2 / (2 + 4)), [0, 3, 12]),
    # Stan's NegBinomial2(y | mu, phi): scipy's nbinom with n = phi, p = phi / (mu + phi)
    "neg_binomial_2": ("3.5, 1.5", "int", st.nbinom(1.5, 1.5 / (3.5 + 1.5)), [0, 2, 11]),
    "von_mises": ("0.5, 2", "real", st.vonmises(2, loc=0.5), [-2.5, 0.4, 3.0]),
    # Stan's Weibull(y | alpha, sigma): shape alpha, scale sigma
    "weibull": ("1.7, 2.5", "positive", st.weibull_min(1.7, scale=2.5), [0.2, 2.0, 6.0]),
}
VECTOR_CASES = {
    "categorical": ("[0.2, 0.5, 0.3]", "int", lambda x: np.log([0.2, 0.5, 0.3])[x], [0, 1, 2]),
    "categorical_logit": ("[0, 1, -1]", "int", lambda x: (np.array([0, 1, -1]) - np.log(np.exp([0, 1, -1]).sum()))[x], [0, 2, 1]),
}
MULTI = {
    "dirichlet": ("[1.5, 2, 3]", "real[3]", lambda x: st.dirichlet([1.5, 2, 3]).logpdf(x), [[0.2, 0.3, 0.5], [0.6, 0.1, 0.3]]),
    "multivariate_normal": ("[1, -1], [[2, 0.5], [0.5, 1]]", "real[2]",
                            lambda x: st.multivariate_normal([1, -1], [[2, 0.5], [0.5, 1]]).logpdf(x), [[0.0, 0.0], [2.0, -3.0]]),
    "multivariate_normal_cholesky": ("[1, -1], [[1.5, 0], [0.5, 1]]", "real[2]",
                                     lambda x: st.multivariate_normal([1, -1], np.array([[1.5, 0], [0.5, 1]]) @ np.array([[1.5, 0], [0.5, 1]]).T).logpdf(x),
                                     [[0.0, 0.0], [2.0, -3.0]]),
    "multi_normal_cholesky": ("[0.5, 2], [[1, 0], [-0.7, 0.4]]", "real[2]",
                              lambda x: st.multivariate_normal([0.5, 2], np.array([[1, 0], [-0.7, 0.4]]) @ np.array([[1, 0], [-0.7, 0.4]]).T).logpdf(x),
                              [[0.0, 0.0], [1.0, 3.0]]),
}


def _lkj_2(eta):
    """The LKJ density of a 2 x 2 Cholesky factor: its correlation r = L[1, 0] has density
    (1 - r^2)^(eta - 1) normalised, i.e. (r + 1) / 2 ~ beta(eta, eta) (Stan's LkjCholesky, K = 2)."""
    return lambda L: st.beta(eta, eta).logpdf((L[1, 0] + 1) / 2) - np.log(2)


def _cholesky_2(r):
    return [[1.0, 0.0], [r, np.sqrt(1 - r * r)]]


LKJ = {
    "lkj_cholesky": ("2, 1.5", "real[2, 2]", _lkj_2(1.5), [_cholesky_2(r) for r in (-0.6, 0.1, 0.8)]),
    "lkj_corr_cholesky": ("2, 3", "real[2, 2]", _lkj_2(3.0), [_cholesky_2(r) for r in (-0.3, 0.5, 0.9)]),
}


def test_every_leaf_is_implemented_and_tested():
    names = set(DISTRIBUTIONS)
    assert all(DISTRIBUTIONS[n].signature.name == n for n in names)
    # flat (improper, no scipy reference): tests/test_constrained_types.py
    assert names - {"flat"} == set(CASES) | set(VECTOR_CASES) | set(MULTI) | set(LKJ)


def _program(name, args, vtype):
    return gendsl.compile(gendsl.parse(f"model t {{\n  data x: {vtype}\n  x ~ {name}({args})\n}}\n"))


@pytest.mark.parametrize("name", sorted(CASES))
def test_scalar_leaf_log_density_matches_scipy(name):
    args, vtype, ref, xs = CASES[name]
    prog = _program(name, args, vtype)
    lp = np.asarray(prog.log_prob({}, {"x": np.array(xs)}))
    expected = ref.logpmf(xs) if vtype == "int" else ref.logpdf(xs)
    np.testing.assert_allclose(lp, expected, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("name", sorted(VECTOR_CASES))
def test_categorical_leaf_matches_closed_form(name):
    args, vtype, ref, xs = VECTOR_CASES[name]
    lp = np.asarray(_program(name, args, vtype).log_prob({}, {"x": np.array(xs)}))
    np.testing.assert_allclose(lp, ref(np.array(xs)), rtol=1e-5)


@pytest.mark.parametrize("name", sorted(MULTI) + sorted(LKJ))
def test_multivariate_leaf_matches_scipy(name):
    args, vtype, ref, xs = {**MULTI, **LKJ}[name]
    lp = np.asarray(_program(name, args, vtype).log_prob({}, {"x": np.array(xs)}))
    np.testing.assert_allclose(lp, [ref(np.array(x)) for x in xs], rtol=1e-4)


@pytest.mark.parametrize("name", ["normal", "gamma", "beta", "poisson", "binomial"])
def test_leaf_samples_have_the_right_moments(name):
    args, vtype, ref, _ = CASES[name]
    prog = _program(name, args, vtype)
    n = 20000
    x = np.asarray(prog.sample({}, jax.random.key(0), n)["x"], dtype=float)
    se = ref.std() / np.sqrt(n)
    assert abs(x.mean() - ref.mean()) < 4 * se
    assert abs(x.std() - ref.std()) < 0.05 * ref.std()


@pytest.mark.parametrize("name, args, ref", [
    ("student_t", "[3, 5, 30], [0, 1, -1], [1, 2, 0.5]", st.t([3, 5, 30], [0, 1, -1], [1, 2, 0.5])),
    ("weibull", "[0.8, 1.5, 3], 2", st.weibull_min([0.8, 1.5, 3], scale=2)),
    ("inv_gamma", "3, [1, 2, 4]", st.invgamma(3, scale=[1, 2, 4])),
])
def test_vector_arguments_score_each_element(name, args, ref):
    x = np.array([[0.4, 1.5, 2.5]])
    lp = _program(name, args, "positive[3]" if name != "student_t" else "real[3]").log_prob({}, {"x": x})
    np.testing.assert_allclose(lp, ref.logpdf(x[0]).sum(), rtol=2e-5)


def test_broadcasting_over_a_declared_shape_sums_event_dims():
    prog = gendsl.compile(gendsl.parse("model t {\n  data x: real[3]\n  x ~ normal([0, 1, 2], 2)\n}\n"))
    x = np.array([[0.5, 0.0, 1.0]])
    np.testing.assert_allclose(prog.log_prob({}, {"x": x}), st.norm([0, 1, 2], 2).logpdf(x[0]).sum(), rtol=1e-5)


def test_a_new_distribution_is_one_row(monkeypatch):
    """A Gumbel row added to the table (as one line in gendsl/mechanisms/distributions.py would):
    the check, the lowering and the leaf use it, and its log-density is scipy's."""
    import numpyro.distributions as dist

    import gendsl.mechanisms.leaf as leaf_module
    from gendsl import lang
    from gendsl.core.catalog import Catalog, Table
    from gendsl.core.signatures import Param, Signature
    from gendsl.mechanisms.distributions import Distribution
    from gendsl.program import Program
    from gendsl.registry import CATALOG

    row = Distribution(Signature("gumbel", "distribution", (Param("loc", "expr"), Param("scale", "expr")), "", "real"),
                       dist.Gumbel)
    monkeypatch.setattr(leaf_module, "DISTRIBUTIONS", Table("distribution", {**DISTRIBUTIONS, "gumbel": row}))
    catalog = Catalog({**CATALOG.signatures, "gumbel": row.signature}, CATALOG.mechanisms)
    model = lang.parse("model g {\n  data x: real\n  x ~ gumbel(1, 2)\n}\n", catalog)
    xs = np.array([-1.0, 0.5, 3.0], np.float32)
    lp = Program(model).log_prob({}, {"x": xs})
    np.testing.assert_allclose(lp, st.gumbel_r(1, 2).logpdf(xs), rtol=1e-5)
