"""The builder API has every statement of the language: ``param`` (a flat prior), bounds and
constrained types, ``fn`` (with ``scan``), ``local``, ``generated``, ``target +=``, slices and
comparisons; each builds the model its ``.gen`` text gives, variable for variable."""

import jax
import numpy as np
import pytest

import gendsl
from gendsl.builder import (
    ModelBuilder,
    dirichlet,
    exp,
    half_normal,
    integer,
    logpdf,
    normal,
    ordered,
    real,
    scan,
    simplex,
    sum,
)
from gendsl.errors import GenError
from gendsl.inference import log_joint

TEXT = """
model ar {
  data T: int
  data y: real[T]
  data g: int[T]
  mu ~ normal(0, 1)
  phi: real<lower=-1, upper=1>
  sigma ~ half_normal(1)
  c: ordered[2] ~ normal(0, 3)
  w: simplex[3] ~ dirichlet([1, 1, 1])
  fn step(e, x, a) = x - a * e
  local err = scan(step, 0, y, phi)
  target += logpdf(normal(mu, sigma), err[1:])
  target += -0.5 * sum((c - w[1:]) ^ 2) * (g[0] >= 1)
  generated ynew ~ normal(mu + phi * y[T - 1], sigma)
  generated big = exp(ynew) > 2
  generated same = (ynew == mu) or (ynew != mu)
}
"""


def built():
    m = ModelBuilder("ar")
    T = m.data("T", integer())
    y = m.data("y", real(T))
    g = m.data("g", integer(T))
    mu = m.sample("mu", normal(0, 1))
    phi = m.param("phi", real(lower=-1, upper=1))
    sigma = m.sample("sigma", half_normal(1))
    c = m.sample("c", normal(0, 3), type=ordered(2))
    w = m.sample("w", dirichlet([1, 1, 1]), type=simplex(3))
    step = m.fn("step", lambda e, x, a: x - a * e)
    err = m.local("err", scan(step, 0, y, phi))
    m.target(logpdf(normal(mu, sigma), err[1:]))
    m.target(-0.5 * sum((c - w[1:]) ** 2) * (g[0] >= 1))
    ynew = m.generated("ynew", normal(mu + phi * y[T - 1], sigma))
    m.generated("big", exp(ynew) > 2)
    m.generated("same", ynew.eq(mu) | ynew.ne(mu))
    return m.build()


def test_the_builder_builds_the_model_the_text_gives():
    text, model = gendsl.parse(TEXT), built()
    assert list(text.graph.nodes) == list(model.graph.nodes)
    assert set(text.graph.edges) == set(model.graph.edges)
    for v in text.variables():
        assert v == model[v.name], v.name
    assert [f.expr for f in text.factors] == [f.expr for f in model.factors]
    assert gendsl.compile(text).describe() == gendsl.compile(model).describe()


@pytest.mark.filterwarnings("ignore::gendsl.errors.ImproperPriorWarning")
def test_the_twins_have_one_log_density():
    data = {"T": 6, "y": np.random.default_rng(0).normal(size=6), "g": np.array([1, 0, 2, 0, 1, 1])}
    z = jax.random.normal(jax.random.key(1), (5, 7))  # mu, phi, sigma, c (2), w (2 free)
    with jax.enable_x64(True):
        values = []
        for model in (gendsl.parse(TEXT), built()):
            joint, arrays, params = log_joint(gendsl.compile(model), data)
            assert joint.dim == 7
            values.append(np.asarray(jax.vmap(lambda p: joint.logdensity(p, arrays, params))(z)))
    np.testing.assert_array_equal(values[0], values[1])
    assert np.all(np.isfinite(values[0]))


def test_builder_mistakes_are_errors_at_the_python_line():
    m = ModelBuilder("bad")
    m.sample("x", normal(0, 1))
    with pytest.raises(GenError, match="takes no type"):
        m.generated("z", m.let("u", 1) * 2, type=real())
    with pytest.raises(GenError, match="no step"):
        m.let("v", gendsl.builder.Ref(gendsl.builder.Name("x"))[0:4:2])
    m.generated("q", gendsl.builder.Ref(gendsl.builder.Name("nowhere")) + 1)
    with pytest.raises(GenError) as err:
        m.build()
    assert "nowhere" in str(err.value) and "test_builder_statements.py" in str(err.value)
