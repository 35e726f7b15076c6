"""Hypothesis strategies for the front-end fuzz tests: random valid ``.gen`` models drawn from the
signature table (every distribution, mechanism and option) and token / character mutations."""

from __future__ import annotations

import re

from hypothesis import strategies as st

from gendsl.core.functions import FUNCTIONS
from gendsl.core.signatures import REQUIRED
from gendsl.mechanisms.distributions import DISTRIBUTIONS as _DISTRIBUTIONS
from gendsl.registry import CATALOG, NETWORKS, SIGNATURES

DISTRIBUTIONS = [row.signature for row in _DISTRIBUTIONS.values()]
by_category = CATALOG.by_category
from gendsl.lang.parser import MAX_DIMENSION

# --------------------------------------------------------------------------- generating models

NAME_RE = r"[A-Za-z_][A-Za-z0-9_]{0,7}"
RESERVED = {"model", "data", "fn", "of", "and", "or", "local", "generated"}
SCALAR_FUNCTIONS = sorted(n for n, f in FUNCTIONS.items()
                          if f.nargs == (1, 1) and f.rule.__name__ in ("_elementwise", "_reduce"))
BROADCAST = [d for d in DISTRIBUTIONS if d.event == "broadcast"]
BASE_OF_SUPPORT = {"real": "real", "positive": "positive", "unit": "unit", "interval": "real", "int": "int", "any": "real"}
numbers = st.one_of(
    st.integers(0, 10**6).map(str),
    st.floats(0, 1e300, allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from([".5", "3.", "2e3", "1E-2", "0.0", "007", "1e-999"]),
)


@st.composite
def expressions(draw, scalars: list[str], depth: int = 3) -> str:
    """A scalar expression over the names ``scalars``, nested at most ``depth``."""
    if depth == 0 or draw(st.integers(0, 3)) == 0:
        return draw(st.sampled_from(scalars)) if scalars and draw(st.booleans()) else draw(numbers)
    sub = expressions(scalars, depth - 1)
    form = draw(st.sampled_from(["bin", "neg", "call", "paren", "pow", "call2"]))
    if form == "bin":
        return f"{draw(sub)} {draw(st.sampled_from('+-*/'))} {draw(sub)}"
    if form == "neg":
        return f"-{draw(sub)}"
    if form == "paren":
        return f"({draw(sub)})"
    if form == "pow":
        return f"{draw(sub)}^{draw(sub)}"
    if form == "call2":
        fn = draw(st.sampled_from(["pow", "min", "max"]))
        return f"{fn}({draw(sub)}, {draw(sub)})"
    return f"{draw(st.sampled_from(SCALAR_FUNCTIONS))}({draw(sub)})"


@st.composite
def options(draw, sig_name: str, fixed: dict[str, str], names: list[str], skip: tuple = ()) -> str:
    """The argument list of a call to ``sig_name``: required ones, ``fixed`` ones, random options
    (none for the parameters in ``skip``)."""
    sig = SIGNATURES[sig_name]
    parts = []
    for p in sig.params:
        if p.name in skip:
            continue
        if p.name in fixed:
            parts.append(f"{p.name}={fixed[p.name]}")
            continue
        if p.default is not REQUIRED and not draw(st.booleans()):
            continue
        value = draw(option_value(p, names))
        if value is None:
            if p.default is REQUIRED:
                return None
            continue
        parts.append(f"{p.name}={value}")
    order = draw(st.permutations(parts))
    return ", ".join(order)


@st.composite
def option_value(draw, p, names: list[str]) -> str | None:
    """A valid value (as text) for the parameter ``p``, or None where none is made up here."""
    kind = p.kind
    if p.choices:
        return f'"{draw(st.sampled_from(p.choices))}"'
    if kind == "int":
        return str(draw(st.integers(1, 4)))
    if kind == "number":  # within every option's range: probabilities in (0, 1), min below max
        if p.name.endswith("_max"):
            return draw(st.sampled_from(["5", "20.0"]))
        return draw(st.sampled_from(["0.5", "2.5e-1", "0.01", ".1"]))
    if kind == "bool":
        return draw(st.sampled_from(['"true"', '"false"', "0", "1"]))
    if kind == "ints":
        return "[" + ", ".join(str(v) for v in draw(st.lists(st.integers(1, 6), min_size=1, max_size=2))) + "]"
    if kind == "int_or_str":
        return draw(st.sampled_from(['"adaptive"', "4", "8"]))
    if kind == "names":
        if not names:
            return None
        chosen = draw(st.lists(st.sampled_from(names), min_size=1, max_size=2, unique=True))
        return chosen[0] if len(chosen) == 1 and draw(st.booleans()) else "[" + ", ".join(chosen) + "]"
    for category in kind.split("|"):
        if category in ("network", "map", "process", "sampler", "kernel", "objective"):
            return draw(nested_call(category, names))
    return None


@st.composite
def nested_call(draw, category: str, names: list[str], exclude: tuple = ()) -> str:
    known = [n for n in by_category(category) if n not in exclude]
    if category == "network":  # options take vector networks; factorize's autoregressive ones are drawn apart,
        # and the image networks (whose entry may refuse a shape; the drawn variables are vectors) are
        # tried by tests/test_networks.py and tests/test_image_networks.py
        known = [n for n in known if NETWORKS[n].kind == "vector" and NETWORKS[n].refuse is None]
    name = draw(st.sampled_from(sorted(known)))
    fixed = {}
    if name in ("cnf", "generator"):
        fixed = {"net": draw(nested_call("network", names))}
        if name == "generator":
            fixed["critic"] = draw(nested_call("network", names))
    # dsm's several noise levels need sigma_max > sigma, tempering's max_temperature exceeds 1: drawn apart
    # (tests/mechanisms/test_energy_mixing.py)
    skip = {"dsm": ("sigma_max", "levels"), "tempering": ("max_temperature",)}.get(name, ())
    args = draw(options(name, fixed, names, skip=skip))
    return f"{name}({args})"


MECHANISM_FOR = {"real": ["factorize", "pushforward", "evolve", "energy"], "token": ["factorize"]}


@st.composite
def mechanism_rhs(draw, name: str, base: str, dims: str, parents: list[str], mechanisms) -> tuple[str, str] | None:
    """``(rhs, mechanism)`` modelling the data variable ``name`` with one of ``mechanisms``."""
    choices = [m for m in MECHANISM_FOR[base] if m in mechanisms]
    if not choices:
        return None
    mech = draw(st.sampled_from(choices))
    given_opt = draw(option_value(SIGNATURES["factorize"].param("given"), parents)) if draw(st.booleans()) else None
    tail = f", given={given_opt}" if given_opt else ""
    if mech == "factorize":
        net = draw(st.sampled_from(["made", "transformer", "mlp"] if base == "real" else ["transformer", "mlp", "made"]))
        if net == "transformer":
            heads = draw(st.integers(1, 2))
            args = f"layers={draw(st.integers(1, 2))}, width={4 * heads}, heads={heads}"
        else:
            args = draw(options(net, {"hidden": f"[{draw(st.integers(1, 8))}]"}, []))
        return f"factorize({net}({args}){tail})", mech
    if mech == "pushforward":
        mapping = draw(nested_call("map", parents))
        return f"pushforward(normal({draw(numbers)}, 1), {mapping}{tail})", mech
    if mech == "evolve":
        # evolve's network maps a point to a vector: an mlp (the autoregressive ones are refused with a message)
        fixed = {"process": draw(nested_call("process", parents)), "net": f"mlp({draw(options('mlp', {}, parents))})"}
        extra = draw(options("evolve", fixed, parents, skip=("given",)))
        return f"evolve({extra}{tail})", mech
    # annealed needs an energy trained at several noise levels; a population sampler, an unconditional energy
    exclude = ("annealed", *(("smc", "tempering") if tail else ()))
    sampler = draw(nested_call("kernel", parents, exclude))
    if draw(st.booleans()):  # a network energy, trained by an objective
        # an energy network maps a point to one number: an mlp (the other networks are rejected with a message)
        fixed = {"E": f"mlp({draw(options('mlp', {}, parents))})", "train": draw(nested_call("objective", parents))}
        if draw(st.booleans()):
            fixed["sampler"] = sampler
    else:  # an expression: nothing to train
        fixed = {"E": f"sum({name}^2) / 2", "sampler": sampler}
    extra = draw(options("energy", fixed, [], skip=("given", "train")))
    if tail:  # a conditional energy runs one chain per draw: chains= must stay 0
        extra = re.sub(r",?\s*chains=\d+", "", extra).replace("(, ", "(")
    return f"energy({extra}{tail})", mech


@st.composite
def models(draw, mechanisms=("factorize", "pushforward", "evolve", "energy"), max_statements: int = 8):
    """``(text, used)``: the text of a valid random model and the mechanisms it uses."""
    names = draw(st.lists(st.from_regex(NAME_RE, fullmatch=True).filter(lambda s: s not in RESERVED),
                          min_size=max_statements + 2, max_size=max_statements + 2, unique=True))
    model_name = names.pop()
    lines, scalars, observed, used = [], [], [], set()
    dim = None
    if draw(st.booleans()):
        dim = names.pop()
        lines.append(f"data {dim}: int")
    for _ in range(draw(st.integers(1, max_statements))):
        n = names.pop()
        kind = draw(st.sampled_from(["leaf", "leaf", "let", "special", "data_leaf", "mechanism"]))
        if kind == "let":
            lines.append(f"{n} = {draw(expressions(scalars))}")
            scalars.append(n)
        elif kind == "leaf":
            d = draw(st.sampled_from(BROADCAST))
            args = ", ".join(draw(expressions(scalars, 2)) for _ in d.params)
            base = BASE_OF_SUPPORT[d.support]
            shape = draw(st.sampled_from(["", "", "[3]", f"[{dim}]" if dim else "[2, 2]"]))
            typed = f": {base}{shape}" if shape or draw(st.booleans()) else ""
            lines.append(f"{n}{typed} ~ {d.name}({args})")
            if not shape and base != "int":
                scalars.append(n)
        elif kind == "special":
            e = draw(expressions(scalars, 1))
            lines.append(f"{n} ~ " + draw(st.sampled_from([
                f"categorical(softmax([{e}, 1, 2]))", f"categorical_logit([{e}, 0])", f"dirichlet([1, exp({e})])",
                f"multivariate_normal([{e}, 0], eye(2))", f"lkj_cholesky(3, exp({e}))",
                f"multivariate_normal_cholesky([0, 1, {e}], cholesky(eye(3)))"])))
        elif kind == "data_leaf":
            lines.append(f"data {n}: real[{draw(st.integers(1, 3))}]")
            lines.append(f"{n} ~ normal({draw(expressions(scalars, 2))}, exp({draw(expressions(scalars, 1))}))")
            observed.append(n)
        else:
            base = draw(st.sampled_from(["real", "token"]))
            size = draw(st.integers(1, 3))
            vtype = f"real[{size}]" if base == "real" else f"token[{size}] of {draw(st.integers(2, 5))}"
            made = draw(mechanism_rhs(n, base, str(size), list(observed), mechanisms))
            if made is None:
                continue
            rhs, mech = made
            lines.append(f"data {n}: {vtype}")
            lines.append(f"{n} ~ {rhs}")
            used.add(mech)
            observed.append(n)
    sep = draw(st.sampled_from(["\n  ", "\n\n  ", "; ", "\n  # a comment\n  "]))
    return f"model {model_name} {{\n  " + sep.join(lines) + "\n}\n", used


# --------------------------------------------------------------------------- mutations

TOKEN_RE = re.compile(r'\s+|\w+|"[^"\n]*"|.', re.S)
POOL = ["model", "data", "of", "real", "positive", "unit", "int", "token", "{", "}", "(", ")", "[", "]", ",",
        ":", ";", "~", "=", "+", "-", "*", "/", "^", "#", '"', "\\", ".", "@", "\n", "\r", "\r\n", "\t", "\x00",
        "\x0c", "\u2028", "\ufeff", "é", "\U0001f600", "\x1b[2J", "normal(", "mlp(", "given=", "x", "__import__",
        "1e999", "1e-999", "9" * 400, "9" * 5000, str(MAX_DIMENSION + 1), "0", "-1", "3.5", "[]", "()", '""',
        "x.__class__", "eval(", "exec('import os')", "(" * 300, "-" * 250, "[" * 250]


@st.composite
def mutate(draw, text: str) -> str:
    """``text`` with one to four token or character edits."""
    for _ in range(draw(st.integers(1, 4))):
        tokens = TOKEN_RE.findall(text) or [""]
        op = draw(st.sampled_from(["delete", "swap", "duplicate", "insert", "replace", "char_delete", "char_insert"]))
        i = draw(st.integers(0, len(tokens) - 1))
        j = draw(st.integers(0, len(tokens) - 1))
        if op == "delete":
            del tokens[i:i + draw(st.integers(1, 3))]
        elif op == "swap":
            tokens[i], tokens[j] = tokens[j], tokens[i]
        elif op == "duplicate":
            tokens[i:i] = tokens[i:i + draw(st.integers(1, 5))]
        elif op == "insert":
            tokens.insert(i, draw(st.one_of(st.sampled_from(POOL), st.text(max_size=4))))
        elif op == "replace":
            tokens[i] = draw(st.sampled_from(POOL))
        text = "".join(tokens)
        k = draw(st.integers(0, len(text)))
        if op == "char_delete":
            text = text[:k] + text[k + 1:]
        elif op == "char_insert":
            text = text[:k] + draw(st.characters()) + text[k:]
    return text
