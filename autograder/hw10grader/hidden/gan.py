"""Hidden checks for Problem 3 (GANs): the public checks' formulas on another batch and
latent size, and with a confident discriminator, value and gradient together. Judge side
only. They run the public checks' probe on designs of the kinds the public checks use
(B = 100 and dim_z = 64 as in training, or B in [24, 63] with another dim_z), so student
code cannot tell them apart from the public ones; every mistake they catch is named by the
public check that charges it too (the same MISTAKES table)."""
from __future__ import annotations

import numpy as np
from hw10kit.checks import gan_probes
from hw10kit.checks.core import Check
from hw10kit.checks.gan import (D_LOSS, MM_G, NS_G, Q3, TRAINING_BATCH, TRAINING_DIM_Z, design, other_batch,
                                value_and_gradient_verdict)


def _confident_logits(rng, n):
    """A discriminator sure of itself: reals scored 2 to 6, fakes -15 to -8 (near 0), but
    30% of them 3 to 6 (near 1, fooled). Its wrong-side logits stay below 7, where float32 sigmoid
    is far from saturating: torch.log(torch.sigmoid(l)), clamped or not, and
    F.binary_cross_entropy on sigmoid outputs are right here to 1e-5 (the extreme public
    check alone charges them)."""
    real = rng.uniform(2, 6, n)
    fooled = n * 3 // 10  # 30% of the fakes fool it
    fake = rng.permutation(np.concatenate([rng.uniform(3, 6, fooled), -rng.uniform(8, 15, n - fooled)]))
    return real, fake


def confident(target):
    return design(target, _confident_logits, batch=TRAINING_BATCH, dim_z=TRAINING_DIM_Z)


CALL = gan_probes.gan_loss_call

HIDDEN = [
    Check(Q3, D_LOSS, "value and gradients on another batch size", 0.25, other_batch(D_LOSS),
          CALL, value_and_gradient_verdict),
    Check(Q3, D_LOSS, "value and gradients with a confident discriminator", 0.25, confident(D_LOSS),
          CALL, value_and_gradient_verdict),
    Check(Q3, NS_G, "value and gradient on another batch size", 0.5, other_batch(NS_G),
          CALL, value_and_gradient_verdict),
    Check(Q3, MM_G, "value and gradient on another batch size", 0.5, other_batch(MM_G),
          CALL, value_and_gradient_verdict),
]
