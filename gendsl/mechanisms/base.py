"""The one interface every mechanism implements, and the registry that finds them by name.

A mechanism lowers one variable of known (concrete) type and known parents into pure JAX
functions. All arrays are batched: ``x`` has shape ``(n, *event_shape)`` and ``given`` maps each
conditioning variable to an array of shape ``(n, *its_event_shape)``.

The compiler never special-cases a mechanism: it calls only what is declared here.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping

import equinox as eqx
import jax
import jax.numpy as jnp
import numpyro.distributions.constraints as constraints

from gendsl.core.signatures import Signature, Spec, default_spec
from gendsl.core.types import VarType
from gendsl.errors import GenSemanticError, Span
from gendsl.nn import DEFAULT_VECTOR_NETWORK, NETWORKS

__all__ = [
    "KINDS",
    "weakest_kind",
    "NodeContext",
    "AbstractMechanism",
    "context_size",
    "context_vector",
    "split_module",
    "vector_network",
    "check_vector_network",
    "build_network",
    "Choice",
    "type_size",
]

#: likelihood kinds, strongest first
KINDS = ("exact", "estimate", "unnormalized", "unavailable")


def weakest_kind(kinds) -> str:
    """The weakest of several likelihood kinds (``exact`` for none)."""
    return max(kinds, key=KINDS.index, default="exact")


@dataclass(frozen=True)
class NodeContext:
    """Everything a mechanism knows about the variable it lowers.

    Attributes
    ----------
    name:
        The variable's name.
    type:
        Its type with every dimension bound to an integer.
    spec:
        The resolved right-hand side (``Spec("pushforward", "mechanism", {...})`` or a distribution).
    parents:
        Type of each parent variable (bound), in order: every variable the node reads.
    given:
        The subset of parents the node is conditioned on through ``given=`` (and ``base=NAME``).
    evaluate:
        ``evaluate(expr, env) -> array``: evaluates an expression of the language for ONE example,
        ``env`` mapping names to unbatched values. Used by leaves and energy expressions.
    span:
        Where the variable is defined (for error messages).
    mechanisms:
        The registry's mechanism table (injected by the compiler): a node builds a nested
        right-hand side (an energy's ``base=``) as ``mechanisms[name].build(ctx)``.
    load_source:
        ``load_source(source, node, span) -> (node, params, model name)``: the trained node a ``prior(...)``
        stands for and its frozen parameters; injected by the application layer.
    observed:
        Whether the variable is declared data: its type's bounds and constraint are then checks of
        the values (made when the data are bound), not a support.
    """

    name: str
    type: VarType
    spec: Spec
    parents: dict[str, VarType] = field(default_factory=dict)
    given: tuple[str, ...] = ()
    evaluate: Callable[[Any, dict], jax.Array] | None = None
    span: Span = field(default_factory=Span)
    mechanisms: Mapping[str, type["AbstractMechanism"]] = field(default_factory=dict)
    load_source: Callable[[Any, str | None, Span], tuple["AbstractMechanism", Any, str]] | None = None
    observed: bool = False

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.type.shape)

    @property
    def size(self) -> int:
        out = 1
        for d in self.shape:
            out *= d
        return out


@dataclass(frozen=True)
class Choice:
    """One way a mechanism can model a variable, with the properties the advisor weighs.

    Attributes
    ----------
    form:
        The right-hand side to write, e.g. ``"pushforward(normal(0, 1), spline(layers=4))"``.
    likelihood:
        Its likelihood kind (one of :data:`KINDS`); None until the advisor has priced the form.
    nfe:
        Network evaluations per sample; None until priced.
    conditional:
        Whether it accepts ``given=``.
    note:
        What it is good at, in a few words.
    learned:
        Whether it learns the variable's distribution from data (False for a fixed leaf
        distribution, a choice only for variables that are not learned).
    """

    form: str
    likelihood: str | None
    nfe: int | None
    conditional: bool = True
    note: str = ""
    learned: bool = True


def type_size(vtype: VarType) -> int:
    """Elements of one draw of a variable of (bound) type ``vtype``."""
    out = 1
    for d in vtype.shape:
        out *= int(d)
    return out


class AbstractMechanism(abc.ABC):
    """A lowered node. Subclasses set the class attributes and implement the abstract methods.

    Class attributes
    ----------------
    name:
        Registry name ("leaf", "factorize", ...).
    kind:
        Likelihood kind of ``log_prob``: one of :data:`KINDS` (may be overridden per instance).
    loss_name, sampler_name:
        Words for ``describe()``.
    groups:
        Parameter groups updated in turn by ``fit`` (e.g. ``("main", "critic")``).
    """

    name: ClassVar[str]
    kind: str = "exact"
    loss_name: str = "nll"
    sampler_name: str = "ancestral"
    groups: tuple[str, ...] = ("main",)
    has_params: bool = True
    improper: bool = False  # an improper prior (flat): inference warns that the posterior may be improper

    def __init__(self, ctx: NodeContext):
        self.ctx = ctx

    @classmethod
    def build(cls, ctx: NodeContext) -> "AbstractMechanism":
        """The node of this mechanism for ``ctx`` (what the compiler calls). Default: ``cls(ctx)``."""
        return cls(ctx)

    # -- the contract --------------------------------------------------------------------------
    @abc.abstractmethod
    def init(self, key: jax.Array) -> Any:
        """Fresh parameters (a PyTree of arrays; ``{}`` when there are none)."""

    @abc.abstractmethod
    def sample(self, params, key: jax.Array, n: int, given: dict) -> jax.Array:
        """``n`` draws, shape ``(n, *shape)``, given parents' values of shape ``(n, ...)``."""

    @abc.abstractmethod
    def log_prob(self, params, x: jax.Array, given: dict) -> jax.Array:
        """Per-example log-density of ``x`` (shape ``(n, *shape)``), shape ``(n,)``."""

    def log_prob_elements(self, params, x: jax.Array, given: dict) -> jax.Array:
        """The log-density of ONE example (``x`` of the variable's shape, ``given`` unbatched) split
        into the terms of its independent elements where the mechanism factorises so (a leaf
        distribution: shape the variable's batch shape), else whole: shape ``()``. The terms sum
        to the example's :meth:`log_prob` (pointwise log-likelihoods for LOO and WAIC)."""
        return self.log_prob(params, x[None], jax.tree_util.tree_map(lambda v: v[None], given))[0]

    def sample_with_info(self, params, key: jax.Array, n: int, given: dict) -> tuple[jax.Array, dict]:
        """:meth:`sample` and what it measured, as values: ``(draws, info)``, ``info`` a dict of
        arrays (``"nfe"``: network evaluations per sample, for nodes whose count is only known
        after the solve). Nothing is written back into the node. Default: no statistics."""
        return self.sample(params, key, n, given), {}

    def loss(self, params, x: jax.Array, given: dict, key: jax.Array) -> jax.Array:
        """The training objective matched to the mechanism (scalar). Default: mean NLL."""
        return -jnp.mean(self.log_prob(params, x, given))

    def cost(self) -> int:
        """Network evaluations per sample (default: :meth:`static_cost` of the node's spec)."""
        return self.static_cost(self.ctx.spec, self.ctx.type, self.ctx.mechanisms)

    # -- declared properties of a spec, before any node is built (plan, advisor) ----------------
    @classmethod
    def static_kind(cls, spec: Spec) -> str:
        """Likelihood kind of a node with resolved right-hand side ``spec``. Default: :attr:`kind`."""
        return cls.kind

    @classmethod
    def static_cost(cls, spec: Spec, vtype: VarType, mechanisms) -> int:
        """Network evaluations per sample of a node with ``spec`` and (bound) type ``vtype``
        (``mechanisms``: the mechanism table, for nested right-hand sides).

        The one cost model: :meth:`cost` returns it (unless a node measures its own, e.g. an
        adaptive solver) and the advisor's choices are priced by it. Default: 1.
        """
        return 1

    # -- training extras, with defaults that do nothing ----------------------------------------
    def init_train_state(self, key: jax.Array, params) -> Any:
        """State carried across training steps (persistent chains, EMA, ...). Default: none."""
        return ()

    def train_loss(self, params, state, x, given, key, group: str = "main"):
        """Loss minimised by ``group`` at one step, and the new training state.

        Returns ``(scalar, new_state)``. Default: :meth:`loss` for ``main``, nothing else.
        """
        if group != "main":
            return jnp.zeros(()), state
        return self.loss(params, x, given, key), state

    def param_labels(self, params) -> Any:
        """The group of each parameter leaf (a PyTree of strings like ``params``). Default: main."""
        return jax.tree_util.tree_map(lambda _: "main", params)

    def finalize(self, params, state) -> Any:
        """Parameters to hand back after training (e.g. the EMA). Default: ``params``."""
        return params

    def support(self, params, given_one: dict):
        """The numpyro constraint of one draw (for moving latents to unconstrained space)."""
        return constraints.real

    @classmethod
    def choices(cls, vtype: VarType) -> list[Choice]:
        """The ways this mechanism can model a variable of (bound) type ``vtype`` (for the advisor).

        Default: none. Implementations list forms with :meth:`choice`, which prices them.
        """
        return []

    @classmethod
    def choice(cls, form: str, note: str = "", conditional: bool = True) -> Choice:
        """A :class:`Choice` for the right-hand side ``form``, to be priced by the advisor (which
        resolves the form and asks the mechanism it names for its kind and cost)."""
        return Choice(form, None, None, conditional, note)

    # -- the declaration the semantic check calls (pure: no arrays, no JAX) ----------------------
    #: variable bases the mechanism models
    bases: ClassVar[tuple[str, ...]] = ("real",)
    #: its signature in the language (mechanisms only; ``leaf`` has none of its own)
    signature: ClassVar[Signature | None] = None
    #: what the mechanism's declaration offers beyond the contract (e.g. ``"distillable"``)
    capabilities: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def self_reference(cls, spec: Spec, name: str) -> bool:
        """Whether the right-hand side may read the variable itself (an energy ``E(x)``)."""
        return False

    @classmethod
    def anchor(cls, spec: Spec, file: str | None, catalog) -> Spec:
        """``spec`` made independent of the working directory (run folders). Default: as is."""
        return spec

    @classmethod
    def infer_type(cls, name: str, spec: Spec, typing) -> VarType | None:
        """The variable's type when it is not written, or None. ``typing`` gives ``shape_of(expr)``,
        ``types`` (the parents' types), ``distribution_shape(spec)`` and ``catalog``."""
        return None

    @classmethod
    def check_spec(cls, name: str, spec: Spec, vtype: VarType, typing) -> None:
        """Raise :class:`GenSemanticError` if ``spec`` cannot model ``name`` of type ``vtype``:
        every option and network compatibility rule, so that ``check`` and ``compile`` agree."""

    def describe(self) -> dict[str, str]:
        """One row of the plan."""
        return {
            "mechanism": self.name,
            "loss": self.loss_name,
            "likelihood": self.kind,
            "sampler": self.sampler_name,
            "cost": str(self.cost()),
        }


# -- helpers shared by network-based mechanisms ---------------------------------------------------


def context_size(parents: dict[str, VarType], names) -> int:
    """Width of :func:`context_vector` for the conditioning variables ``names``."""
    total = 0
    for n in names:
        t = parents[n]
        size = 1
        for d in t.shape:
            size *= int(d)
        total += size * (int(t.vocab) if t.base == "token" else 1)
    return total


def context_vector(given: dict, parents: dict[str, VarType], names) -> jax.Array | None:
    """Flatten conditioning values into one ``(n, C)`` float matrix (tokens one-hot); None if no names."""
    if not names:
        return None
    parts = []
    for n in names:
        t, v = parents[n], given[n]
        v = v.reshape(v.shape[0], -1)
        if t.base == "token":
            v = jax.nn.one_hot(v, int(t.vocab)).reshape(v.shape[0], -1)
        parts.append(v.astype(jnp.float32))
    return jnp.concatenate(parts, axis=-1)


def vector_network(spec: Spec | None, **defaults) -> Spec:
    """The network of a ``net=`` option: ``spec``, or (None) the default vector network with its
    signature's defaults, ``defaults`` overriding them."""
    if spec is not None:
        return spec
    default = default_spec(NETWORKS[DEFAULT_VECTOR_NETWORK].signature)
    return Spec(default.name, default.category, {**default.options, **defaults})


def check_vector_network(spec, role: str, span: Span | None, option: str | None = None,
                         event_shape: tuple | None = None) -> None:
    """Refuse a network spec that is not of kind ``vector``, or that cannot read the event.

    ``role`` says whose network it is ("the network of evolve() for 'x'"), ``option`` the option
    it is given as (``net``; None for a positional one), for the message. ``event_shape`` is the
    shape of the event the network's input starts with (the variable's; its sizes may be unbound
    names): a network whose entry refuses it (an image network and a vector variable) is refused
    here, with the reason. Anything but a network spec (None: the default; an expression) passes.
    """
    if not isinstance(spec, Spec) or spec.category != "network":
        return
    entry = NETWORKS.lookup(spec.name, span)
    if entry.kind != "vector" or entry.build is None:
        usable = " or ".join(f"{option + '=' if option else ''}{n}(...)" for n, e in NETWORKS.items()
                             if e.kind == "vector")
        article = "an" if entry.kind[0] in "aeiou" else "a"
        raise GenSemanticError(f"{role} must be a vector network, such as {usable}; got {spec.name}(...), "
                               f"{article} {entry.kind} network", span)
    why = entry.refuse(spec, tuple(event_shape)) if entry.refuse is not None and event_shape is not None else None
    if why is not None:
        shape = ", ".join(str(d) for d in event_shape)
        raise GenSemanticError(f"{role} cannot be {spec.name}(...) for an event of shape [{shape}]: {why}", span)


def build_network(spec: Spec, in_size: int, out_size: int, *, key: jax.Array, zero_last: bool = False,
                  input_gain: jax.Array | None = None, event_shape: tuple[int, ...] | None = None) -> eqx.Module:
    """``NETWORKS[spec.name].build(...)``: a per-example ``(in_size,) -> (out_size,)`` module whose
    input starts with an event of shape ``event_shape`` flattened (see :class:`gendsl.nn.Network`)."""
    return NETWORKS[spec.name].build(spec, in_size, out_size, key=key, zero_last=zero_last, input_gain=input_gain,
                                     event_shape=event_shape)


def split_module(module) -> tuple[Any, Any]:
    """Split an equinox module into (array parameters, static rest); ``eqx.combine`` rejoins them."""
    return eqx.partition(module, eqx.is_inexact_array)
