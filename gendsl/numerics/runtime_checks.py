"""Checks that run inside compiled programs, and their way out as a :class:`GenRuntimeError`.

Some failures are known only while a compiled program runs: an adaptive ODE solve that hits its
step limit is the example. :func:`fail_if` raises from inside ``jit`` (``equinox.error_if``, a
host callback: the program stays compiled), with a message marked as meant for a user;
:func:`user_errors` is the boundary where such a failure leaves JAX: it turns the runtime error
JAX raises into a one-line :class:`GenRuntimeError` and keeps JAX's callback logger from printing
the traceback it would otherwise write to the terminal.
"""

from __future__ import annotations

import contextlib
import functools
import logging

import equinox as eqx
import jax

from gendsl.errors import GenRuntimeError

__all__ = ["fail_if", "user_errors", "with_user_errors"]

#: what starts the message of a failure meant for a user, inside JAX's runtime error text
_MARK = "gendsl runtime check: "
#: the logger that prints a traceback when a host callback raises
_CALLBACK_LOGGER = logging.getLogger("jax._src.callback")


def fail_if(value, failed: jax.Array, message: str):
    """``value`` unchanged, or a :class:`GenRuntimeError` carrying ``message`` (at the boundary of
    :func:`user_errors`) when ``failed`` (a boolean array, any shape: any element) holds.

    Traceable under ``jit``, ``vmap``, ``grad`` and ``scan``; ``message`` is one line.
    """
    return eqx.error_if(value, failed, _MARK + message.replace("\n", " "))


@contextlib.contextmanager
def user_errors():
    """Inside this block a :func:`fail_if` failure is raised as a :class:`GenRuntimeError` (and JAX
    prints no traceback for it); every other error passes unchanged."""
    disabled = _CALLBACK_LOGGER.disabled
    _CALLBACK_LOGGER.disabled = True
    try:
        yield
    except Exception as err:  # JAX's runtime error type differs between versions and backends
        text = str(err)
        if _MARK not in text:
            raise
        message = text.split(_MARK, 1)[1].split("\n", 1)[0].strip()
        raise GenRuntimeError(message) from None
    finally:
        _CALLBACK_LOGGER.disabled = disabled


def with_user_errors(fn):
    """``fn`` run inside :func:`user_errors`, its result waited for (JAX dispatches asynchronously:
    a failure shows when the arrays are ready); a decorator for the methods that run compiled programs."""
    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        with user_errors():
            return jax.block_until_ready(fn(*args, **kwargs))
    return wrapped
