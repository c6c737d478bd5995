"""Hidden checks for Problem 3 (GANs): the public checks' formulas on other batch sizes
and logits, value and gradient together. Judge side only."""
from __future__ import annotations

from hw10kit.checks import gan_probes
from hw10kit.checks.core import Check
from hw10kit.checks.gan import (D_LOSS, MM_G, NS_G, Q3, d_gradient_verdict, design,
                                g_gradient_verdict, value_verdict)


def other_batch(target, batch=13):
    return design(target, lambda rng: rng.normal(0.0, 4.0, batch), lambda rng: rng.normal(0.0, 4.0, batch),
                  dim_z=17)


def _both(gradient_verdict):
    def verdict(inputs, out):
        ok, message = value_verdict(inputs, out)
        if not ok:
            return ok, message
        return gradient_verdict(inputs, out)
    return verdict


def lopsided(target):
    """A discriminator that is sure of itself: every fake scored near 0 or near 1."""
    return design(target, lambda rng: rng.uniform(5, 12, 9), lambda rng: rng.choice([-1, 1], 9) * rng.uniform(8, 15, 9))


HIDDEN = [
    Check(Q3, D_LOSS, "value and gradients on another batch size", 0.25, other_batch(D_LOSS),
          gan_probes.gan_loss_call, _both(d_gradient_verdict)),
    Check(Q3, D_LOSS, "value and gradients with a confident discriminator", 0.25, lopsided(D_LOSS),
          gan_probes.gan_loss_call, _both(d_gradient_verdict)),
    Check(Q3, NS_G, "value and gradient on another batch size", 0.5, other_batch(NS_G),
          gan_probes.gan_loss_call, _both(g_gradient_verdict)),
    Check(Q3, MM_G, "value and gradient on another batch size", 0.5, other_batch(MM_G),
          gan_probes.gan_loss_call, _both(g_gradient_verdict)),
]
