"""``distilled``: an evolve node turned into a K-step map (built by :func:`gendsl.distill.distill`).

The student keeps its teacher's process, network shape, standardisation and conditioning. On
the teacher's K-step time grid ``1 = t_0 > t_1 > ... > t_K`` it jumps
``y_{i+1} = alpha(t_{i+1}) x0_hat + sigma(t_{i+1}) eps_hat`` with ``(x0_hat, eps_hat)`` its
network's prediction at ``(t_i, y_i)``: a DDIM step, exact along the teacher's probability-flow
ODE when the network has learnt the right jump. One network evaluation per step (guidance, if
the teacher had any, is part of what was distilled), no likelihood.

Its spec is ``Spec("distilled", "mechanism", {"teacher": <the evolve spec>, "steps": K, "given": ...})``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from gendsl.core.signatures import Spec
from gendsl.errors import GenRuntimeError
from gendsl.mechanisms.base import Choice
from gendsl.mechanisms.evolve.node import EvolveNode
from gendsl.numerics.standardise import unstandardise

__all__ = ["Distilled"]


class Distilled(EvolveNode):
    """A K-step sampler distilled from an ``evolve`` node: ``cost() == K``, likelihood unavailable."""

    name = "distilled"
    bases = ("real",)
    kind = "unavailable"
    loss_name = "distillation (regression on teacher ODE paths)"

    def __init__(self, ctx):
        super().__init__(ctx, ctx.spec["teacher"])
        self.steps = int(ctx.spec["steps"])
        if self.steps < 1:
            raise GenRuntimeError(f"a distilled sampler needs at least 1 step, got {self.steps}", ctx.span)
        #: the K + 1 times of the map, decreasing from 1
        self.grid: np.ndarray = self.process.time_grid(self.steps)
        self.sampler_name = f"{self.steps}-step distilled map"

    def init(self, key):
        """The teacher's parameters plus ``times``, the map's K + 1 times (kept fixed in training).

        ``times`` makes a student's parameters unreadable as a teacher's (and as another K's).
        """
        return {**super().init(key), "times": jnp.asarray(self.grid, jnp.float32)}

    def jump(self, params, y, context, i: int):
        """Step ``i`` of the map: ``(n, *shape)`` at ``times[i]`` -> ``(n, *shape)`` at ``times[i + 1]``."""
        model = self.model(params["net"])
        times = jax.lax.stop_gradient(params["times"])
        x0_hat, eps_hat = jax.vmap(model, (None, 0, 0))(times[i], y, context)
        alpha, sigma = self.process.alpha_sigma(times[i + 1])
        return alpha * x0_hat + sigma * eps_hat

    def distillation_loss(self, params, path: jax.Array, context) -> jax.Array:
        """Mean over the K jumps of the squared error onto the teacher's next point (scalar);
        ``path`` ``(n, K + 1, *shape)`` from the teacher's ``teacher_paths``."""
        total = jnp.zeros(())
        for i in range(self.steps):
            pred = self.jump(params, path[:, i], context, i)
            err = (pred - path[:, i + 1]).reshape(pred.shape[0], -1)
            total = total + jnp.mean(jnp.sum(err**2, axis=-1))
        return total / self.steps

    def sample(self, params, key, n, given):
        y = self.prior_draws(key, n)
        context = self.context(given)
        for i in range(self.steps):
            y = self.jump(params, y, context, i)
        return unstandardise(params, y)

    def log_prob(self, params, x, given):
        raise GenRuntimeError(f"'{self.ctx.name}' is a distilled {self.steps}-step map and has no likelihood; "
                              f"use the teacher program for log_prob", self.ctx.span)

    def loss(self, params, x, given, key):
        raise GenRuntimeError(f"'{self.ctx.name}' is a distilled map: it is trained by distill() from its "
                              f"teacher, not by fit()", self.ctx.span)

    @classmethod
    def static_cost(cls, spec, vtype, mechanisms) -> int:
        """One network evaluation per step of the map."""
        return int(spec["steps"])

    @classmethod
    def choices(cls, vtype):
        """An ``evolve`` fit distilled into a K-step map (K = 1 and 4), for real variables."""
        if vtype.base != "real":
            return []
        out = []
        for k in (1, 4):
            spec = Spec("distilled", "mechanism", {"teacher": None, "steps": k, "given": ()})
            out.append(Choice(f"evolve(...) distilled to {k} step{'s' if k > 1 else ''}", cls.kind,
                              cls.static_cost(spec, vtype, {}), True,
                              f"fit an evolve model, then `gendsl distill RUN --steps {k} --out DIR`; "
                              "sampling only"))
        return out

    def describe(self):
        row = super().describe()
        row["mechanism"] = f"evolve {self.process.name}, distilled"
        return row
