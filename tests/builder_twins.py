"""Builder-API twins of every LANGUAGE.md example (tests compare their plans to the text's)."""

from gendsl.builder import (
    ModelBuilder,
    cd,
    coupling,
    dsm,
    energy,
    evolve,
    factorize,
    flow_matching,
    half_cauchy,
    integer,
    mala,
    mlp,
    normal,
    nuts,
    ode,
    pushforward,
    real,
    token,
    transformer,
    vp,
)


def moons_flow():
    m = ModelBuilder("moons_flow")
    m.data("x", real(2))
    m.sample("x", pushforward(normal(0, 1), coupling(layers=8, hidden=[64, 64])))
    return m.build()


def moons_diffusion():
    m = ModelBuilder("moons_diffusion")
    m.data("x", real(2))
    m.sample("x", evolve(vp(beta_min=0.1, beta_max=20), net=mlp(hidden=[128, 128, 128]), sampler=ode(steps=64)))
    return m.build()


def moons_ebm():
    m = ModelBuilder("moons_ebm")
    m.data("x", real(2))
    m.sample("x", energy(mlp(hidden=[128, 128]), train=dsm(sigma=0.1, levels=1), sampler=mala(step_size=0.01, steps=200)))
    return m.build()


def markov_text():
    m = ModelBuilder("markov_text")
    m.data("s", token(32, of=8))
    m.sample("s", factorize(transformer(layers=2, width=64, heads=4)))
    return m.build()


def banana():
    m = ModelBuilder("banana")
    m.sample("x", energy(lambda x: x[0] ** 2 / 8 + (x[1] - x[0] ** 2 / 4) ** 2 / 2, sampler=nuts()), type=real(2))
    return m.build()


def eight_schools():
    m = ModelBuilder("eight_schools")
    J = m.data("J", integer())
    m.data("y", real(J))
    sigma = m.data("sigma", real(J))
    mu = m.sample("mu", normal(0, 5))
    tau = m.sample("tau", half_cauchy(5))
    theta_raw = m.sample("theta_raw", normal(0, 1), type=real(J))
    theta = m.let("theta", mu + tau * theta_raw)
    m.sample("y", normal(theta, sigma))
    return m.build()


def labelled_points():
    m = ModelBuilder("labelled_points")
    label = m.data("label", token(1, of=4))
    m.data("x", real(2))
    m.sample("label", factorize(mlp(hidden=[32])))
    m.sample("x", evolve(flow_matching(), net=mlp(hidden=[128, 128]), sampler=ode(steps=32), given=label))
    return m.build()


def tilted_flow():
    m = ModelBuilder("tilted_flow")
    m.data("x", real(2))
    m.sample("x", energy(mlp(hidden=[64, 64]), base=pushforward(normal(0, 1), coupling(layers=4, hidden=[64, 64])),
                         train=cd(steps=20), sampler=mala(step_size=0.02, steps=50)))
    return m.build()


TWINS = {f.__name__: f for f in [moons_flow, moons_diffusion, moons_ebm, markov_text, banana, eight_schools,
                                 labelled_points, tilted_flow]}
