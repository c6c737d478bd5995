"""Public checks for Problem 3 (GANs). The grader runs these and its hidden checks.

Conventions: ``d(x)`` returns logits (B,), D = sigmoid(logits); every loss is a scalar
averaged over the batch. In terms of the logits l, with softplus(t) = log(1 + e^t):

* discriminator, non-saturating: mean softplus(-l_real) + mean softplus(l_fake)
  (= -mean log D(x) - mean log(1 - D(G(z))));
* generator, non-saturating: mean softplus(-l_fake) (= -mean log D(G(z)));
* generator, minimax (saturating): -mean softplus(l_fake) (= mean log(1 - D(G(z)))).

Every check, public or hidden, runs one probe (``gan_probes.gan_loss_call``) on a design
of the same kind: images (B, 1, 28, 28) in [0, 1], either as training makes them (B = 100,
dim_z = 64) or with another B in [24, 63] and another dim_z. Each verdict reads what it
needs from the probe's report, and a mistake is named by the public check that charges it.
"""
from __future__ import annotations

import numpy as np

from . import gan_probes, stats
from .core import (Check, Mistake, close_rel, describe_mismatch, reference_verdict, shape_guard, sigmoid,
                   softplus)

NOTEBOOK, KEYWORD = "hw10_gan.ipynb", "gan"
Q3 = "Q3(c)"  # the losses that 3(c) trains with
D_LOSS, NS_G, MM_G = "loss_nonsaturating_d", "loss_nonsaturating_g", "loss_minimax_g"

TRAINING_BATCH, TRAINING_DIM_Z = 100, 64      # as train_gan calls the losses
OTHER_BATCHES = (24, 64)                       # rng.integers: 24 to 63, never 64 or 100
OTHER_DIM_Z = (16, 32, 48, 100, 128)
#: |logit| bound of the designs other than the extreme one: there the float32 rounding of
#: torch.sigmoid moves log(sigmoid(l)) by at most 3e-8 * e^7 per term, far inside the
#: tolerance, so that form (clamped, or through F.binary_cross_entropy) passes them and is
#: charged once, by the extreme check, which names it.
MODERATE = 7.0
Z_FIX = "z = torch.randn(B, g.dim_z, device=device), B = x_real.shape[0]"
DELTA = stats.DELTA


# ------------------------------------------------------------------ references
def d_loss_ref(lr, lf):
    return float(np.mean(softplus(-lr)) + np.mean(softplus(lf)))


def ns_g_ref(lr, lf):
    return float(np.mean(softplus(-lf)))


def mm_g_ref(lr, lf):
    return float(-np.mean(softplus(lf)))


REFERENCE = {D_LOSS: d_loss_ref, NS_G: ns_g_ref, MM_G: mm_g_ref}
FORMULA = {D_LOSS: "-mean log D(x) - mean log(1 - D(G(z)))", NS_G: "-mean log D(G(z))",
           MM_G: "mean log(1 - D(G(z)))"}


def _mean(f):
    return lambda t: float(np.mean(f(t)))


_sp_neg, _sp_pos = _mean(lambda t: softplus(-t)), _mean(softplus)   # -mean log D, -mean log(1 - D)

#: For each loss, wrong formulas students write (as functions of the real and fake logits)
#: and what to say; the first that matches is named. tests/test_q3_mistakes.py checks that
#: on every design each differs from the reference and from the others.
MISTAKES = {
    D_LOSS: [
        (lambda lr, lf: _sp_pos(lr) + _sp_neg(lf),
         "the labels are swapped: real images should get D(x) -> 1 (the term -log D(x)) and fakes "
         "D(G(z)) -> 0 (the term -log(1 - D(G(z))))"),
        (lambda lr, lf: -d_loss_ref(lr, lf), "it has the wrong sign: the loss is -mean log D(x) - "
                                             "mean log(1 - D(G(z))), which is non-negative"),
        (lambda lr, lf: float(np.sum(softplus(-lr)) + np.sum(softplus(lf))),
         "it is summed over the batch: average each term (.mean())"),
        (lambda lr, lf: float((np.sum(softplus(-lr)) + np.sum(softplus(lf))) / (len(lr) + len(lf))),
         "it is one mean over the real and fake images together, half the expected value: average the "
         "real and the fake terms separately, then add the two means"),
        (lambda lr, lf: _sp_pos(lf), "the real-data term -mean log D(x) is missing"),
        (lambda lr, lf: _sp_neg(lr), "the fake-data term -mean log(1 - D(G(z))) is missing"),
        (lambda lr, lf: _sp_neg(lr) - _sp_pos(lf),
         "the fake-data term has the wrong sign: log(1 - D(G(z))) = F.logsigmoid(-l_fake) is "
         "subtracted, like log D(x): loss = -mean log D(x) - mean log(1 - D(G(z)))"),
        (lambda lr, lf: -_sp_neg(lr) + _sp_pos(lf),
         "the real-data term has the wrong sign: log D(x) = F.logsigmoid(l_real) is subtracted, like "
         "log(1 - D(G(z))): loss = -mean log D(x) - mean log(1 - D(G(z)))"),
        (lambda lr, lf: _sp_neg(lr) + _sp_neg(lf),
         "the fakes are scored as real: their term is -log D(G(z)) (target 1), but the discriminator "
         "wants D(G(z)) -> 0: -mean log(1 - D(G(z))), target 0 (torch.zeros_like)"),
        (lambda lr, lf: _sp_pos(lr) + _sp_pos(lf),
         "the real images are scored as fakes: their term is -log(1 - D(x)) (target 0), but the "
         "discriminator wants D(x) -> 1: -mean log D(x), target 1 (torch.ones_like)"),
    ],
    NS_G: [
        (mm_g_ref, "that is the minimax (saturating) loss mean log(1 - D(G(z))): the non-saturating "
                   "generator loss is -mean log D(G(z))"),
        (lambda lr, lf: -_sp_neg(lf), "it has the wrong sign: it is mean log D(G(z)), and the loss is "
                                      "-mean log D(G(z)), which is non-negative"),
        (lambda lr, lf: _sp_pos(lf),
         "it is -mean log(1 - D(G(z))), the fake term of the discriminator's loss (what "
         "F.binary_cross_entropy_with_logits(l, torch.zeros_like(l)) gives): the generator wants "
         "D(G(z)) -> 1, so its target is 1: -mean log D(G(z)) = "
         "F.binary_cross_entropy_with_logits(l, torch.ones_like(l))"),
        (lambda lr, lf: float(np.sum(softplus(-lf))), "it is summed over the batch: average it (.mean())"),
        (lambda lr, lf: _sp_neg(lr), "it is computed on the real images, d(x_real): the generator's loss "
                                     "scores its own samples, d(g(z))"),
        (d_loss_ref, "that is the discriminator's loss: the generator's is -mean log D(G(z))"),
    ],
    MM_G: [
        (ns_g_ref, "that is the non-saturating loss -mean log D(G(z)): the minimax generator loss "
                   "is mean log(1 - D(G(z)))"),
        (lambda lr, lf: _sp_pos(lf), "it has the wrong sign: it is -mean log(1 - D(G(z))), and the loss "
                                     "is mean log(1 - D(G(z))), which is non-positive"),
        (lambda lr, lf: -_sp_neg(lf),
         "it is mean log D(G(z)) (what -F.binary_cross_entropy_with_logits(l, torch.ones_like(l)) "
         "gives): the minimax loss is mean log(1 - D(G(z))) = "
         "-F.binary_cross_entropy_with_logits(l, torch.zeros_like(l))"),
        (lambda lr, lf: float(-np.sum(softplus(lf))), "it is summed over the batch: average it (.mean())"),
        (lambda lr, lf: -_sp_pos(lr), "it is computed on the real images, d(x_real): the generator's loss "
                                      "scores its own samples, d(g(z))"),
    ],
}


def mistakes(target, lr, lf) -> list:
    return [Mistake(fn(lr, lf), hint) for fn, hint in MISTAKES[target]]


def on_real_images(target, lr) -> float:
    """A generator's loss computed on d(x_real) instead of d(g(z))."""
    return _sp_neg(lr) if target == NS_G else -_sp_pos(lr)


# ------------------------------------------------------------------ log(sigmoid) in float32
#: Where float32 torch.sigmoid is exactly 0 (l below) or exactly 1 (l above), on every
#: platform; the extreme designs put no logit between these and the moderate range.
SIGMOID_ZERO_BELOW, SIGMOID_ONE_ABOVE = -110.0, 25.0


def _eps_caps():
    """(C_neg, C_pos, what) for the usual guards of log(0): an epsilon added inside the log,
    a clamp of the sigmoid to [eps, 1 - eps] (1 - eps rounds in float32), and
    F.binary_cross_entropy, which clamps each log at -100."""
    caps = [(100.0, 100.0, "bce")]
    epsilons = [10.0 ** -k for k in range(3, 21)] + [float(np.finfo(np.float32).eps),
                                                      float(np.finfo(np.float32).tiny)]
    for eps in epsilons:
        e32 = np.float32(eps)
        c = float(-np.log(np.float64(e32)))
        caps.append((c, c, f"eps:{eps:.3g}"))
        one_minus = np.float32(np.float32(1.0) - e32)
        if one_minus < 1:
            caps.append((c, float(-np.log(np.float64(np.float32(1.0) - one_minus))), f"clamp:{eps:.3g}"))
    return caps


EPS_CAPS = _eps_caps()


def capped_terms(lr, lf, target, c_neg, c_pos):
    """The loss as torch.log(torch.sigmoid(.)) with log(0) guarded computes it in float32:
    -log D = softplus(-l) is capped at c_neg (and is c_neg where sigmoid(l) is 0),
    -log(1 - D) = softplus(l) at c_pos (c_pos where sigmoid(l) is 1)."""
    def neg(t):
        t = np.asarray(t, np.float64)
        return np.where((t < SIGMOID_ZERO_BELOW) | (softplus(-t) > c_neg), c_neg, softplus(-t))

    def pos(t):
        t = np.asarray(t, np.float64)
        return np.where((t > SIGMOID_ONE_ABOVE) | (softplus(t) > c_pos), c_pos, softplus(t))

    if target == D_LOSS:
        return float(np.mean(neg(lr)) + np.mean(pos(lf)))
    if target == NS_G:
        return float(np.mean(neg(lf)))
    return float(-np.mean(pos(lf)))


def guarded_log_mistakes(target, lr, lf) -> list:
    """The values of the guarded log(sigmoid) forms at these logits, with their hints."""
    out = []
    for c_neg, c_pos, what in EPS_CAPS:
        if what == "bce":
            hint = ("F.binary_cross_entropy on torch.sigmoid(l) clamps each log at -100, and torch.sigmoid(l) "
                    "is exactly 0 or 1 in float32 once |l| is large, so its terms stop at 100: use "
                    "F.binary_cross_entropy_with_logits on the logits (or F.logsigmoid, F.softplus)")
        else:
            eps = what.split(":")[1]
            hint = (f"its -log terms stop near {c_neg:.4g} = -log({eps}), as with an epsilon {eps} added inside "
                    f"torch.log(...) or torch.clamp(torch.sigmoid(l), {eps}, 1 - {eps}): in float32 "
                    "torch.sigmoid(l) is exactly 0 or 1 once |l| is large, and the guard hides log(0) with a "
                    "wrong value; compute it from the logits with F.logsigmoid, F.softplus or "
                    "F.binary_cross_entropy_with_logits")
        out.append(Mistake(capped_terms(lr, lf, target, c_neg, c_pos), hint))
    return out


OVERFLOW_HINT = ("in float32 torch.sigmoid(l) is exactly 0 below about -90 and exactly 1 above about 17, so "
                 "torch.log(torch.sigmoid(l)) or torch.log(1 - torch.sigmoid(l)) gives log(0) = -inf there, "
                 "and torch.exp(l) overflows to inf above about 89: compute it from the logits with "
                 "F.logsigmoid, F.softplus or F.binary_cross_entropy_with_logits, which are stable")
NAN_GRADIENT_HINT = ("the value is right but the gradient is not finite: an intermediate overflows and is "
                     "then discarded, as in torch.where(l > 0, ..., torch.log1p(torch.exp(l))), which "
                     "computes both branches: exp(200) = inf, and the backward pass multiplies it by 0, "
                     "giving NaN. Use F.softplus or F.logsigmoid, which are stable in both directions")


# ------------------------------------------------------------------ designs
def _centred(rng, n, mean, sd):
    """n logits spread like N(mean, sd^2), stratified (one draw from each of n equal slices
    of probability, shuffled) and shifted so that their mean is exactly ``mean``: the
    batch's loss terms then vary little from batch to batch, and no mistake in MISTAKES
    comes near another by chance (tests/test_q3_mistakes.py)."""
    from statistics import NormalDist

    u = (np.arange(n) + rng.uniform(0.05, 0.95, n)) / n
    e = np.array([NormalDist().inv_cdf(float(p)) for p in u])
    return np.clip(mean + sd * rng.permutation(e - e.mean()), -MODERATE, MODERATE)


def _moderate_logits(rng, n):
    """Real logits around 1.5 (D(x) ~ 0.8), fake ones around -2 (D(G(z)) ~ 0.1), as in
    early training. With these means the real and fake terms of D's loss stand in a ratio
    near 1.4, away from the ratios (1/3, 1/2, 1, 2, 3) where two mistakes coincide."""
    return _centred(rng, n, rng.uniform(1.4, 1.6), 1.5), _centred(rng, n, rng.uniform(-2.1, -1.9), 1.5)


def design(target: str, logits, *, batch=None, dim_z=None):
    """Inputs for one loss: ``logits(rng, B) -> (real, fake)``; ``batch``/``dim_z`` None
    draw the 'other' kind (B in [24, 63], dim_z from OTHER_DIM_Z)."""
    def make(rng):
        b = int(rng.integers(*OTHER_BATCHES)) if batch is None else batch
        z = int(rng.choice(OTHER_DIM_Z)) if dim_z is None else dim_z
        lr, lf = logits(rng, b)
        d = gan_probes.logits_design(rng, lr, lf, z)
        d["target"] = target
        return d
    return make


def training_like(target):
    """As train_gan calls the loss: B = 100, dim_z = 64, moderate logits."""
    return design(target, _moderate_logits, batch=TRAINING_BATCH, dim_z=TRAINING_DIM_Z)


def other_batch(target):
    """Another batch size and latent size, moderate logits."""
    return design(target, _moderate_logits)


#: Extreme logits, each where float32 sigmoid is exactly 0 or 1 (below -110, above 25) or
#: where -log of it is still exact (-60); the rest of the batch is moderate, with mean
#: exactly 0. Their mix is asymmetric and was chosen (a search over such sets) so that on
#: every batch no mistake, and no guarded log(sigmoid) form, comes within 2% of the
#: reference or of another (tests/test_q3_mistakes.py checks it).
EXTREME_REAL = np.array([-180.0, -130.0, -60.0, 60.0, 150.0])
EXTREME_FAKE = np.array([-180.0, -150.0, 45.0, 150.0, 200.0])


def _extreme_logits(rng, n):
    k = len(EXTREME_REAL)
    fill_r, fill_f = _centred(rng, n - k, 0.0, 1.0), _centred(rng, n - len(EXTREME_FAKE), 0.0, 1.0)
    return (rng.permutation(np.concatenate([EXTREME_REAL, fill_r])),
            rng.permutation(np.concatenate([EXTREME_FAKE, fill_f])))


def extreme(target):
    return design(target, _extreme_logits)


# ------------------------------------------------------------------ reading the probe's report
def _first(out) -> dict:
    return out["calls"][0]


def _scalar_value(call):
    """The loss as a float when it holds one number (a (1,)-shaped loss trains as well)."""
    if call.get("numel") != 1 or call.get("value") is None:
        return None
    return float(np.asarray(call["value"], np.float64).ravel()[0])


def _one_number(call):
    """None when the loss is one number; else what to say."""
    if call.get("numel") == 1:
        return None
    return (f"the loss has shape {tuple(call['shape'])}, {call.get('numel')} numbers: it must be one number, "
            "averaged over the batch (.mean())")


def _batch_used(inputs, call) -> str | None:
    batch = len(inputs["real"])
    sizes = [r["shape"][0] for r in call["g_calls"] if r["shape"]]
    if sizes and any(b != batch for b in sizes):
        return (f"g was called with a batch of {sizes[0]}, but x_real has {batch} images: draw {Z_FIX}")
    return None


def _prelude(inputs, out):
    """(False, message) when the first call raised or returned more than one number."""
    call = _first(out)
    if call["error"] is not None:
        return False, call["error"]
    problem = _one_number(call)
    return (False, problem) if problem else None


# ------------------------------------------------------------------ verdicts
def scalar_verdict(inputs, out):
    call = _first(out)
    if call["error"] is not None:
        return False, call["error"]
    problem = shape_guard(call["shape"], (), "the loss", "average over the batch so that it is a 0-dimensional "
                          "tensor, e.g. per_example.mean() (an accumulator torch.zeros(1) gives shape (1,))")
    if problem:
        return False, problem
    if not call["requires_grad"]:
        return False, "the loss carries no gradient: build it from d(...) with torch operations, not .item()"
    return True, "returns a scalar tensor with a gradient"


def value_verdict(inputs, out, *, where=""):
    stop = _prelude(inputs, out)
    if stop:
        return stop
    call, target = _first(out), inputs["target"]
    wrong_batch = _batch_used(inputs, call)
    if wrong_batch:
        return False, wrong_batch
    lr, lf = inputs["real_logits"], inputs["fake_logits"]
    got = _scalar_value(call)
    known = mistakes(target, lr, lf)
    if where:  # at extreme logits: the guarded log(sigmoid) forms, and any overflow
        if not np.isfinite(got):
            return False, f"{target} = {got}{where}: {OVERFLOW_HINT}"
        known += guarded_log_mistakes(target, lr, lf)
    return reference_verdict(got, REFERENCE[target](lr, lf), what=target,
                             formula=FORMULA[target], mistakes=known, where=where)


def _d_grad_ref(inputs):
    lr, lf = inputs["real_logits"], inputs["fake_logits"]
    xr = inputs["real"].reshape(len(lr), -1).astype(np.float64)
    xf = inputs["fake"].reshape(len(lf), -1).astype(np.float64)
    gr, gf = -sigmoid(-lr) / len(lr), sigmoid(lf) / len(lf)
    return gr @ xr + gf @ xf, float(gr.sum() + gf.sum())


def _grad_failed(call) -> str | None:
    if call.get("grad_error"):
        return (f"the loss could not be differentiated ({call['grad_error']}); return the loss itself, "
                "without calling .backward() on it inside the function")
    return None


def d_gradient_verdict(inputs, out, *, where=""):
    """The discriminator's loss reaches the discriminator, exactly, and not the generator."""
    stop = _prelude(inputs, out)
    if stop:
        return stop
    call = _first(out)
    failed = _grad_failed(call)
    if failed:
        return False, failed
    gi = call["grad_images"]
    if gi is not None and np.any(gi != 0):
        return False, ("the discriminator's loss sends gradient into the generator: detach the fake "
                       "images (g(z).detach(), or draw them under torch.no_grad())")
    if call["grad_w"] is None or not np.any(call["grad_w"] != 0):
        if call.get("frozen_d"):
            return False, ("no gradient reaches the discriminator: the loss sets d's requires_grad to False "
                           "(d.requires_grad_(False)), but this loss trains d")
        return False, ("no gradient reaches the discriminator: build the loss from d(x_real) and d(fake) "
                       "without .detach(), .item() or torch.no_grad()")
    want_w, want_b = _d_grad_ref(inputs)
    if not (np.all(np.isfinite(call["grad_w"])) and np.all(np.isfinite(call["grad_b"]))):
        return False, f"the gradient w.r.t. the discriminator's weights contains NaN or inf{where}: {NAN_GRADIENT_HINT}"
    got = np.append(np.ravel(call["grad_w"]), np.ravel(call["grad_b"])[:1])
    if got.shape == (len(want_w) + 1,) and close_rel(got, np.append(want_w, want_b), rtol=1e-3):
        return True, f"gradients reach the discriminator (exactly as they should) and not the generator{where}"
    hint = ""
    if close_rel(got, 0.5 * np.append(want_w, want_b), rtol=1e-3):
        hint = ": it is half the expected gradient, as from one mean over the real and fake images together"
    return False, ("the gradient w.r.t. the discriminator's weights is off: "
                   + describe_mismatch(call["grad_w"], want_w, "d loss/dw") + where + hint)


def g_gradient_ref(inputs):
    target, lf = inputs["target"], inputs["fake_logits"]
    coeff = -sigmoid(-lf) if target == NS_G else -sigmoid(lf)
    w = inputs["w"].astype(np.float64)
    return (coeff[:, None] * w[None, :] / len(lf)).reshape(inputs["fake"].shape)


def g_gradient_verdict(inputs, out, *, where=""):
    """The generator's loss reaches the generator, with the exact gradient."""
    stop = _prelude(inputs, out)
    if stop:
        return stop
    call = _first(out)
    failed = _grad_failed(call)
    if failed:
        return False, failed
    gi = call["grad_images"]
    if gi is None or not np.any(gi != 0):
        if not call["g_calls"]:
            return False, ("no gradient reaches the generator: g is never called. The generator's loss "
                           f"scores its own samples, d(g(z)), with {Z_FIX}")
        value = _scalar_value(call)
        if value is not None and close_rel(value, on_real_images(inputs["target"], inputs["real_logits"]), rtol=1e-4):
            return False, ("no gradient reaches the generator: the loss is computed on the real images, "
                           "d(x_real); the generator's loss scores its own samples, d(g(z))")
        if call.get("frozen_g"):
            return False, ("no gradient reaches the generator: the loss sets g's requires_grad to False "
                           "(g.requires_grad_(False)), but this loss trains g")
        return False, ("no gradient reaches the generator: g is called, but the graph from g(z) to the loss "
                       "is cut (by .detach(), .data, .item() or torch.no_grad()); the generator learns only "
                       "through d(g(z))")
    if not np.all(np.isfinite(gi)):
        return False, f"the gradient w.r.t. the generator's output contains NaN or inf{where}: {NAN_GRADIENT_HINT}"
    want = g_gradient_ref(inputs)
    if close_rel(gi, want, rtol=1e-3):
        return True, f"the gradient w.r.t. the generator's output is correct{where}"
    return False, ("the gradient w.r.t. the generator's output is off: "
                   + describe_mismatch(gi, want, "the gradient") + where)


GRADIENT = {D_LOSS: d_gradient_verdict, NS_G: g_gradient_verdict, MM_G: g_gradient_verdict}
EXTREME_WHERE = " at logits of up to +-200"


def extreme_verdict(inputs, out):
    """Value, then gradients, at extreme logits."""
    ok, message = value_verdict(inputs, out, where=EXTREME_WHERE)
    if not ok:
        return ok, message
    ok, grad_message = GRADIENT[inputs["target"]](inputs, out, where=EXTREME_WHERE)
    return ok, (message + "; " + grad_message) if ok else grad_message


def value_and_gradient_verdict(inputs, out):
    ok, message = value_verdict(inputs, out)
    if not ok:
        return ok, message
    return GRADIENT[inputs["target"]](inputs, out)


# ------------------------------------------------------------------ how z is drawn
def z_format_verdict(inputs, out):
    """Every z that g received is float32, (B, g.dim_z), and on ``device`` (the meta call)."""
    batch, dim_z = len(inputs["real"]), int(inputs["dim_z"])
    received = [r for call in out["calls"] for r in call["g_calls"]]
    for r in received:  # checked before any error: a float64 z makes g raise, as in training
        if r["shape"] is None:
            return False, f"g was called with a {r['dtype']}, not a tensor: draw {Z_FIX}"
        if r["dtype"] != "float32":
            return False, (f"z is {r['dtype']}, but the networks are float32 (the course's generator raises "
                           f"'mat1 and mat2 must have the same dtype'): draw {Z_FIX}, which is float32")
        if r["shape"] != [batch, dim_z]:
            return False, (f"g was called with z of shape {tuple(r['shape'])}, expected (B, g.dim_z) = "
                           f"({batch}, {dim_z}): draw {Z_FIX}")
    first = _first(out)
    if first["error"] is not None:
        return False, first["error"]
    if not received:
        return False, f"g is never called: the loss should score generated images d(g(z)), with {Z_FIX}"
    meta = out.get("meta") or {}
    on_cpu = [r for r in meta.get("g_calls", []) if r["device"] != "meta"]
    if on_cpu:
        return False, (f"z is made on the {on_cpu[0]['device']} while the networks are on `device` (the "
                       "check passed device=torch.device('meta'); on a GPU, g would raise 'Expected all "
                       f"tensors to be on the same device'): draw {Z_FIX}")
    error = meta.get("error") or ""
    if "same device" in error or "expected device" in error:
        return False, ("with the networks and x_real on another device (the check passed "
                       "device=torch.device('meta')), the loss mixes devices: create every tensor it needs "
                       "on `device` (torch.randn(..., device=device), torch.ones_like(l)), not on the CPU. "
                       + error)
    return True, "z is float32, of shape (B, g.dim_z), and made on `device`"


def _z_samples(out):
    """The first z of each call (None where a call did not reach g), as float64."""
    zs = []
    for call in out["calls"]:
        z = call["g_calls"][0]["z"] if call["g_calls"] else None
        zs.append(None if z is None else np.asarray(z, np.float64))
    return zs


def z_normal_verdict(inputs, out):
    """The z of every call is a fresh N(0, I) sample: rows and columns distinct, calls
    distinct (exact ties have probability 0 for a correct draw), then mean, variance and
    normality of all entries, each tested at DELTA / 3 (union bound: DELTA)."""
    first = _first(out)
    if first["error"] is not None:
        return False, first["error"]
    errors = [c["error"] for c in out["calls"] if c["error"]]
    if errors or len(out["calls"]) < gan_probes.CALLS:
        return False, errors[0] if errors else f"{inputs['target']} was not called {gan_probes.CALLS} times"
    zs = _z_samples(out)
    if any(z is None for z in zs):
        return False, f"g is never called (or not with a tensor z on the CPU): draw {Z_FIX} and call g(z)"
    if any(z.ndim != 2 or z.shape != zs[0].shape for z in zs):
        return False, f"z must have the shape (B, g.dim_z) first: draw {Z_FIX}"
    x = np.concatenate([z.ravel() for z in zs])
    if not np.all(np.isfinite(x)):
        return False, "z contains NaN or inf"
    if np.all(x == x[0]):
        return False, (f"z is all zeros: the generator needs noise, {Z_FIX}" if x[0] == 0 else
                       f"z is the constant {x[0]:g}: the generator needs noise, {Z_FIX}")
    if any(np.array_equal(a, b) for i, a in enumerate(zs) for b in zs[i + 1:]):
        return False, ("two calls drew the same z: draw new noise on every call, with torch.randn; don't "
                       "reseed inside the loss (torch.manual_seed) and don't keep z from an earlier call")
    z0 = zs[0]
    if np.unique(z0, axis=0).shape[0] < z0.shape[0] or np.unique(z0.T, axis=0).shape[0] < z0.shape[1]:
        return False, (f"some rows or columns of z are identical: draw every entry independently, {Z_FIX} "
                       "(not one row repeated or expanded over the batch)")
    n, d = x.size, DELTA / 3
    mean, sumsq, ks = float(x.mean()), float(np.sum(x**2)), stats.ks_distance_to_normal(x)
    lo, hi = stats.chi2_bounds(n, d)
    mean_ok, var_ok, shape_ok = abs(mean) <= stats.mean_bound(n, d), lo <= sumsq <= hi, ks <= stats.dkw_bound(n, d)
    if mean_ok and var_ok and shape_ok:
        return True, f"z ~ N(0, I), fresh on every call ({n} draws)"
    found = []
    if not mean_ok:
        found.append(f"mean {mean:.4f} (expected 0)")
    if not var_ok:
        found.append(f"variance {sumsq / n:.4f} (expected 1)")
    if not shape_ok:
        found.append(f"a Kolmogorov-Smirnov distance of {ks:.4f} to N(0, 1)")
    cause = ""
    if x.min() >= 0 and x.max() < 1:
        cause = " All of z lies in [0, 1): torch.rand draws uniform noise; use torch.randn."
    return False, (f"z is not N(0, I) over {n} draws: {', '.join(found)}. Draw {Z_FIX}.{cause}")


# ------------------------------------------------------------------ the public checks
POINTS = {  # scalar, value, extreme, gradient, z format, z distribution (public); hidden in hidden/gan.py
    D_LOSS: (0.25, 0.75, 0.5, 0.5, 0.25, 0.25),
    NS_G: (0.25, 0.25, 0.25, 0.25, 0.25, 0.25),
    MM_G: (0.25, 0.25, 0.25, 0.25, 0.25, 0.25),
}
EXTREME_TITLE = "finite and right, with gradients, at logits of +-200"
Z_FORMAT_TITLE = "z: float32, (B, g.dim_z), on `device` (and nothing new on the CPU)"
Z_NORMAL_TITLE = "z ~ N(0, I), fresh on every call"


def _checks(target, label):
    p_scalar, p_value, p_extreme, p_grad, p_zformat, p_znormal = POINTS[target]
    grad_title = "gradients reach D, not G" if target == D_LOSS else "gradient reaches the generator"
    call = gan_probes.gan_loss_call
    return [
        Check(label, target, "returns a scalar", p_scalar, training_like(target), call, scalar_verdict),
        Check(label, target, "value", p_value, training_like(target), call, value_verdict),
        Check(label, target, EXTREME_TITLE, p_extreme, extreme(target), call, extreme_verdict),
        Check(label, target, grad_title, p_grad, training_like(target), call, GRADIENT[target]),
        Check(label, target, Z_FORMAT_TITLE, p_zformat, training_like(target), call, z_format_verdict),
        Check(label, target, Z_NORMAL_TITLE, p_znormal, training_like(target), call, z_normal_verdict,
              false_failure=DELTA),
    ]


PUBLIC = [*_checks(D_LOSS, Q3), *_checks(NS_G, Q3), *_checks(MM_G, Q3)]
