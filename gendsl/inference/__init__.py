"""Posterior inference over the latent variables of a compiled program (blackjax kernels)."""

from gendsl.inference.infer import OPTIONS, infer, log_joint
from gendsl.inference.joint import Block, LogJoint
from gendsl.inference.posterior import Divergences, Posterior, Summary

__all__ = ["OPTIONS", "infer", "log_joint", "Block", "LogJoint", "Divergences", "Posterior", "Summary"]
