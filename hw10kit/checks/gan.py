"""Public checks for Problem 3 (GANs). The grader runs these and its hidden checks.

Conventions: ``d(x)`` returns logits (B,), D = sigmoid(logits); every loss is a scalar
averaged over the batch. In terms of the logits l, with softplus(t) = log(1 + e^t):

* discriminator, non-saturating: mean softplus(-l_real) + mean softplus(l_fake)
  (= -mean log D(x) - mean log(1 - D(G(z))));
* generator, non-saturating: mean softplus(-l_fake) (= -mean log D(G(z)));
* generator, minimax (saturating): -mean softplus(l_fake) (= mean log(1 - D(G(z)))).
"""
from __future__ import annotations

import numpy as np

from . import gan_probes
from .core import Check, close_rel, describe_mismatch

NOTEBOOK, KEYWORD = "hw10_gan.ipynb", "gan"
Q3 = "Q3(c)"  # the losses that 3(c) trains with
D_LOSS, NS_G, MM_G = "loss_nonsaturating_d", "loss_nonsaturating_g", "loss_minimax_g"
STABLE_HINT = ("compute it from the logits with F.logsigmoid, F.softplus or "
               "F.binary_cross_entropy_with_logits: torch.log(torch.sigmoid(l)) underflows to "
               "log(0) = -inf once |l| is large, and clamping it gives wrong values")


def softplus(t):
    return np.logaddexp(0.0, np.asarray(t, np.float64))


def sigmoid(t):
    t = np.asarray(t, np.float64)
    return np.exp(-softplus(-t))


def d_loss_ref(lr, lf):
    return float(np.mean(softplus(-lr)) + np.mean(softplus(lf)))


def ns_g_ref(lr, lf):
    return float(np.mean(softplus(-lf)))


def mm_g_ref(lr, lf):
    return float(-np.mean(softplus(lf)))


REFERENCE = {D_LOSS: d_loss_ref, NS_G: ns_g_ref, MM_G: mm_g_ref}

#: For each loss, wrong formulas students write and what to say (most likely first).
MISTAKES = {
    D_LOSS: [
        (lambda lr, lf: float(np.mean(softplus(lr)) + np.mean(softplus(-lf))),
         "the labels are swapped: real images should get D(x) -> 1 (the term -log D(x)) and fakes "
         "D(G(z)) -> 0 (the term -log(1 - D(G(z))))"),
        (lambda lr, lf: -d_loss_ref(lr, lf), "it has the wrong sign: the loss is -mean log D(x) - "
                                             "mean log(1 - D(G(z))), which is non-negative"),
        (lambda lr, lf: len(lr) * d_loss_ref(lr, lf), "it is summed over the batch: average each term (.mean())"),
        (lambda lr, lf: d_loss_ref(lr, lf) / 2, "it is half the expected value: average the real and the "
                                                "fake terms separately, then add the two means"),
        (lambda lr, lf: float(np.mean(softplus(lf))), "the real-data term -mean log D(x) is missing"),
        (lambda lr, lf: float(np.mean(softplus(-lr))), "the fake-data term -mean log(1 - D(G(z))) is missing"),
    ],
    NS_G: [
        (mm_g_ref, "that is the minimax (saturating) loss mean log(1 - D(G(z))): the non-saturating "
                   "generator loss is -mean log D(G(z))"),
        (lambda lr, lf: -ns_g_ref(lr, lf), "it has the wrong sign: the loss is -mean log D(G(z)), "
                                           "which is non-negative"),
        (lambda lr, lf: len(lf) * ns_g_ref(lr, lf), "it is summed over the batch: average it (.mean())"),
    ],
    MM_G: [
        (ns_g_ref, "that is the non-saturating loss -mean log D(G(z)): the minimax generator loss "
                   "is mean log(1 - D(G(z)))"),
        (lambda lr, lf: -mm_g_ref(lr, lf), "it has the wrong sign: the loss is mean log(1 - D(G(z))), "
                                           "which is non-positive"),
        (lambda lr, lf: len(lf) * mm_g_ref(lr, lf), "it is summed over the batch: average it (.mean())"),
    ],
}

FORMULA = {D_LOSS: "-mean log D(x) - mean log(1 - D(G(z)))", NS_G: "-mean log D(G(z))",
           MM_G: "mean log(1 - D(G(z)))"}


def design(target: str, real_logits, fake_logits, dim_z: int = 5):
    """Inputs for one loss: a seeded design with the given logits."""
    def make(rng):
        d = gan_probes.logits_design(rng, real_logits(rng), fake_logits(rng), dim_z)
        d["target"] = target
        return d
    return make


def moderate(target, batch=6):
    return design(target, lambda rng: rng.normal(1.0, 1.5, batch), lambda rng: rng.normal(-1.0, 1.5, batch))


EXTREME = np.array([-200.0, -100.0, -30.0, 0.0, 30.0, 100.0, 200.0])


def extreme(target):
    return design(target, lambda rng: rng.permutation(EXTREME), lambda rng: rng.permutation(EXTREME))


def scalar_verdict(inputs, out):
    if out["shape"] != []:
        return False, (f"the loss has shape {tuple(out['shape'])}: it should be a scalar averaged over "
                       "the batch, e.g. per_example.mean()")
    if not out["requires_grad"]:
        return False, "the loss carries no gradient: build it from d(...) with torch operations, not .item()"
    return True, "returns a scalar tensor with a gradient"


def _batch_used(inputs, out) -> str | None:
    batch = inputs["real"].shape[0]
    if out["g_batches"] and any(b != batch for b in out["g_batches"]):
        return (f"g was called with a batch of {out['g_batches'][0]}, but x_real has {batch} images: draw "
                "z = torch.randn(x_real.shape[0], g.dim_z, device=device)")
    return None


def value_verdict(inputs, out, *, extreme_logits=False):
    target = inputs["target"]
    if out["shape"] != []:
        return False, "the loss must be a scalar first"
    wrong_batch = _batch_used(inputs, out)
    if wrong_batch:
        return False, wrong_batch
    lr, lf = inputs["real_logits"], inputs["fake_logits"]
    got, want = float(out["value"]), REFERENCE[target](lr, lf)
    where = " at logits of up to +-200" if extreme_logits else ""
    if close_rel(got, want, rtol=1e-4):
        return True, f"the value is {FORMULA[target]}{where}"
    if not np.isfinite(got):
        return False, f"the loss is {got}{where}: {STABLE_HINT}"
    hint = next((h for fn, h in MISTAKES[target] if close_rel(got, fn(lr, lf), rtol=1e-4)), None)
    if hint is None and extreme_logits:
        hint = STABLE_HINT
    return False, (f"{target} = {got:.6g}{where}, expected {want:.6g} = {FORMULA[target]}"
                   + (f": {hint}" if hint else ""))


def extreme_verdict(inputs, out):
    return value_verdict(inputs, out, extreme_logits=True)


def _d_grad_ref(inputs):
    lr, lf = inputs["real_logits"], inputs["fake_logits"]
    xr = inputs["real"].reshape(len(lr), -1).astype(np.float64)
    xf = inputs["fake"].reshape(len(lf), -1).astype(np.float64)
    gr, gf = -sigmoid(-lr) / len(lr), sigmoid(lf) / len(lf)
    return gr @ xr + gf @ xf, float(gr.sum() + gf.sum())


def d_gradient_verdict(inputs, out):
    """The discriminator's loss reaches the discriminator, exactly, and not the generator."""
    if out["shape"] != []:
        return False, "the loss must be a scalar first"
    gi = out["grad_images"]
    if gi is not None and np.any(gi != 0):
        return False, ("the discriminator's loss sends gradient into the generator: detach the fake "
                       "images (g(z).detach(), or draw them under torch.no_grad())")
    if out["grad_w"] is None or not np.any(out["grad_w"] != 0):
        return False, "no gradient reaches the discriminator: build the loss from d(x_real) and d(fake)"
    want_w, want_b = _d_grad_ref(inputs)
    if close_rel(out["grad_w"], want_w, rtol=1e-3) and close_rel(out["grad_b"], want_b, rtol=1e-3):
        return True, "gradients reach the discriminator (exactly as they should) and not the generator"
    return False, ("the gradient w.r.t. the discriminator's weights is off (is each term a mean over "
                   "its own batch?): " + describe_mismatch(out["grad_w"], want_w, "d loss/dw"))


def g_gradient_ref(inputs):
    target, lf = inputs["target"], inputs["fake_logits"]
    coeff = -sigmoid(-lf) if target == NS_G else -sigmoid(lf)
    w = inputs["w"].astype(np.float64)
    return (coeff[:, None] * w[None, :] / len(lf)).reshape(inputs["fake"].shape)


def g_gradient_verdict(inputs, out):
    """The generator's loss reaches the generator, with the exact gradient."""
    if out["shape"] != []:
        return False, "the loss must be a scalar first"
    gi = out["grad_images"]
    if gi is None or not np.any(gi != 0):
        return False, ("no gradient reaches the generator: compute d(g(z)) without .detach() or "
                       "torch.no_grad(), so that the generator can learn from this loss")
    want = g_gradient_ref(inputs)
    if close_rel(gi, want, rtol=1e-3):
        return True, "the gradient w.r.t. the generator's output is correct"
    return False, "the gradient w.r.t. the generator's output is off: " + describe_mismatch(gi, want, "the gradient")


def _checks(target, label, points):
    p_scalar, p_value, p_extreme, p_grad = points
    grad = d_gradient_verdict if target == D_LOSS else g_gradient_verdict
    grad_title = "gradients reach D, not G" if target == D_LOSS else "gradient reaches the generator"
    return [
        Check(label, target, "returns a scalar", p_scalar, moderate(target), gan_probes.gan_loss_call, scalar_verdict),
        Check(label, target, "value", p_value, moderate(target), gan_probes.gan_loss_call, value_verdict),
        Check(label, target, "finite and right at logits of +-100 and beyond", p_extreme, extreme(target),
              gan_probes.gan_loss_call, extreme_verdict),
        Check(label, target, grad_title, p_grad, moderate(target), gan_probes.gan_loss_call, grad),
    ]


PUBLIC = [*_checks(D_LOSS, Q3, (0.25, 1.0, 0.5, 0.75)),
          *_checks(NS_G, Q3, (0.25, 0.5, 0.25, 0.5)),
          *_checks(MM_G, Q3, (0.25, 0.5, 0.25, 0.5))]
