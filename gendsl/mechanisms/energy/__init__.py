"""``energy``: p(x) proportional to exp(-E(x)) (times a base density), sampled by a blackjax kernel,
trained by score matching or contrastive divergence when E is a network."""

from gendsl.mechanisms.energy.node import CONFINE, Energy
from gendsl.mechanisms.energy.objectives import cd_loss, dsm_loss, ssm_loss

__all__ = ["CONFINE", "Energy", "cd_loss", "dsm_loss", "ssm_loss"]
