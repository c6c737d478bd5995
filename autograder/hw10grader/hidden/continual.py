"""Hidden checks and the references for Problem 5 (continual learning). Judge side only: the
Fisher and the EWC penalty below are what the problem asks students to write, so they never
enter the kit (the notebook's public checks read the values the build stored) nor the sandbox.

The check's network (``hw10kit.checks.continual_probes.ProbeNet``) in float64 numpy, in eval
mode (dropout is the identity): a = W1 x + b1, h = tanh(a), z = W2 h + b2, logits = gain * z.
The per-sample gradient of log p(y | x) = log softmax(logits)[y] is, with
delta = onehot(y) - softmax(logits): dz = gain * delta; dW2 = dz h^T, db2 = dz;
da = (1 - h^2) * (W2^T dz); dW1 = da x^T, db1 = da.
"""
from __future__ import annotations

import numpy as np
from hw10kit.checks import continual_probes as probes
from hw10kit.checks.continual import (FALSE_FAILURE, FISHER, MIX, NAMES, PENALTY, Q5B, Q5C, fisher_hygiene,
                                      fisher_value, mix_design, mix_labels, mix_rows, mix_uniform, net_design,
                                      penalty_design, penalty_grad, penalty_value)
from hw10kit.checks.core import Check, Mistake, close_rel, expectation

SQUARED_BATCH = ("the gradient of the whole batch was squared: the Fisher is the mean over samples of "
                 "each sample's own squared gradient, E[g_i^2], not (sum_i g_i)^2 or (mean_i g_i)^2. Take "
                 "one gradient per sample (a loop over samples, or torch.func.vmap), square it, then average")
SUMMED = ("the squared per-sample gradients were summed: average them over the samples (divide by "
          "len(xs)), so that the Fisher does not grow with the number of samples")
LOGITS_AS_LOGPROBS = ("the network returns logits: log p(y | x) is log_softmax(logits)[y] "
                      "(or -F.cross_entropy(logits, y)), not logits[y] (F.nll_loss on logits)")
TRUE_FISHER = ("that is the true Fisher (y drawn from the model, here its exact expectation): this "
               "function asks for the empirical Fisher, with y the given labels ys")


# ------------------------------------------------------------------ the check's network
def per_sample_grads(inputs, labels=True, logits_as_logprobs=False):
    """{name: (N, *shape)} per-sample gradients of log p(y_i | x_i) (``labels``: y_i = ys[i];
    else a callable giving the class to use), float64, eval mode."""
    x = np.asarray(inputs["xs"], np.float64)
    W1, b1 = np.asarray(inputs["W1"], np.float64), np.asarray(inputs["b1"], np.float64)
    W2, b2 = np.asarray(inputs["W2"], np.float64), np.asarray(inputs["b2"], np.float64)
    gain = np.ones(W2.shape[0]) if inputs.get("gain") is None else np.asarray(inputs["gain"], np.float64)
    h = np.tanh(x @ W1.T + b1)
    logits = gain * (h @ W2.T + b2)
    ys = np.asarray(inputs["ys"]) if labels is True else labels
    onehot = np.eye(W2.shape[0])[ys]
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    delta = onehot if logits_as_logprobs else onehot - p
    dz = gain * delta
    da = (1 - h ** 2) * (dz @ W2)
    return {"fc1.weight": da[:, :, None] * x[:, None, :], "fc1.bias": da,
            "fc2.weight": dz[:, :, None] * h[:, None, :], "fc2.bias": dz}


def softmax_probs(inputs):
    x = np.asarray(inputs["xs"], np.float64)
    h = np.tanh(x @ np.asarray(inputs["W1"], np.float64).T + np.asarray(inputs["b1"], np.float64))
    gain = np.ones(len(inputs["b2"])) if inputs.get("gain") is None else np.asarray(inputs["gain"], np.float64)
    logits = gain * (h @ np.asarray(inputs["W2"], np.float64).T + np.asarray(inputs["b2"], np.float64))
    p = np.exp(logits - logits.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True)


def empirical_fisher(inputs) -> dict:
    return {n: (g ** 2).mean(0) for n, g in per_sample_grads(inputs).items()}


def _different(want: dict, mistakes):
    """The mistakes that differ from the right answer (a hint never fires on a right one)."""
    return [m for m in mistakes if not all(close_rel(m.value[n], want[n], rtol=1e-4) for n in want)]


def fisher_expected(inputs) -> dict:
    g = per_sample_grads(inputs)
    n = len(inputs["ys"])
    want = {k: (v ** 2).mean(0) for k, v in g.items()}
    probs = softmax_probs(inputs)
    k = probs.shape[1]
    true = {name: sum(probs[:, c].reshape((-1,) + (1,) * (v.ndim - 1))
                      * per_sample_grads(inputs, labels=np.full(n, c))[name] ** 2 for c in range(k)).mean(0)
            for name, v in g.items()}
    logits_g = per_sample_grads(inputs, logits_as_logprobs=True)
    return expectation(want, _different(want, [
        Mistake({k_: v.sum(0) ** 2 for k_, v in g.items()}, SQUARED_BATCH),
        Mistake({k_: v.mean(0) ** 2 for k_, v in g.items()}, SQUARED_BATCH),
        Mistake({k_: v.sum(0) ** 2 / n for k_, v in g.items()}, SQUARED_BATCH),
        Mistake({k_: (v ** 2).sum(0) for k_, v in g.items()}, SUMMED),
        Mistake({k_: (v ** 2).mean(0) for k_, v in logits_g.items()}, LOGITS_AS_LOGPROBS),
        Mistake(true, TRUE_FISHER),
    ]))


# ------------------------------------------------------------------ the penalty
MISSING_HALF = "twice the penalty: the EWC penalty is (lam / 2) sum F (theta - theta*)^2; the 1/2 is missing"
MISSING_LAM = "lam is missing: multiply by lam / 2"
NO_HALF_NO_LAM = "both lam and the 1/2 are missing: (lam / 2) sum F (theta - theta*)^2"
ABS = "that uses |theta - theta*|: the penalty squares the difference, (theta - theta*)^2"
NO_FISHER = "the Fisher is missing: each squared difference is weighted by F_i"
FISHER_SQUARED = "the Fisher is squared: each squared difference is weighted by F_i itself"
MEAN = ("that averages over each parameter's entries: sum F_i (theta_i - theta*_i)^2 over every entry "
        "of every parameter (.sum(), not .mean())")


def _theta(inputs):
    return dict(zip(NAMES, (np.asarray(inputs[k], np.float64) for k in ("W1", "b1", "W2", "b2"))))


def _penalty(inputs, power=2, f_power=1, reduce=np.sum, scale=None):
    theta, lam = _theta(inputs), inputs["lam"]
    scale = lam / 2 if scale is None else scale
    total = 0.0
    for n in NAMES:
        f = np.asarray(inputs["fisher"][n], np.float64) ** f_power
        total += reduce(f * np.abs(theta[n] - np.asarray(inputs["star"][n], np.float64)) ** power)
    return np.float64(scale * total)


def penalty_expected(inputs) -> dict:
    want, lam = _penalty(inputs), inputs["lam"]
    mistakes = [Mistake(_penalty(inputs, scale=lam), MISSING_HALF), Mistake(_penalty(inputs, scale=0.5), MISSING_LAM),
                Mistake(_penalty(inputs, scale=1.0), NO_HALF_NO_LAM), Mistake(_penalty(inputs, power=1), ABS),
                Mistake(_penalty(inputs, f_power=0), NO_FISHER), Mistake(_penalty(inputs, f_power=2), FISHER_SQUARED),
                Mistake(_penalty(inputs, reduce=np.mean), MEAN)]
    return expectation(want, [m for m in mistakes if not close_rel(m.value, want, rtol=1e-4)])


def penalty_grad_expected(inputs) -> dict:
    theta, lam = _theta(inputs), inputs["lam"]
    diff = {n: theta[n] - np.asarray(inputs["star"][n], np.float64) for n in NAMES}
    F = {n: np.asarray(inputs["fisher"][n], np.float64) for n in NAMES}
    want = {n: lam * F[n] * diff[n] for n in NAMES}
    return expectation(want, _different(want, [
        Mistake({n: 2 * want[n] for n in NAMES}, MISSING_HALF),
        Mistake({n: want[n] / lam for n in NAMES}, MISSING_LAM),
        Mistake({n: lam / 2 * F[n] * np.sign(diff[n]) for n in NAMES}, ABS),
    ]))


REFERENCES = {"fisher": fisher_expected, "penalty": penalty_expected, "penalty_grad": penalty_grad_expected}


# ------------------------------------------------------------------ hidden checks
def with_reference(verdict, key):
    def check(inputs, out):
        return verdict({**inputs, "expected": REFERENCES[key](inputs)}, out)
    return check


def fisher_all(inputs, out):
    """Value and hygiene together."""
    ok, message = with_reference(fisher_value, "fisher")(inputs, out)
    return (ok, message) if not ok else fisher_hygiene(inputs, out)


def penalty_all(inputs, out):
    for verdict, key in ((penalty_value, "penalty"), (penalty_grad, "penalty_grad")):
        ok, message = with_reference(verdict, key)(inputs, out)
        if not ok:
            return ok, message
    return True, "value and gradient are right"


def mix_all(inputs, out):
    for verdict in (mix_rows, mix_labels, mix_uniform):
        ok, message = verdict(inputs, out)
        if not ok:
            return ok, message
    return True, "the new batch, n_replay uniform draws with their labels"


HIDDEN = [
    Check(Q5B, FISHER, "entered in eval mode with stale gradients in .grad, one sample more", 0.75,
          net_design(d=7, h=5, k=3, n=10, mode="eval", stale=True), probes.fisher_call, fisher_all),
    Check(Q5B, FISHER, "a frozen parameter gets no entry; a larger batch", 0.75,
          net_design(d=4, h=8, k=5, n=33, frozen=True), probes.fisher_call, fisher_all),
    Check(Q5B, PENALTY, "another network, a frozen parameter fisher does not hold, lam = 250", 0.5,
          penalty_design(d=7, h=3, k=6, lam=250.0, frozen=True), probes.penalty_call, penalty_all),
    Check(Q5C, MIX, "image-shaped batches, more replayed rows than new ones", 0.5,
          mix_design(batch=3, memory=12, n_replay=8, dim=6, calls=500, image=True), probes.mix_call, mix_all,
          false_failure=FALSE_FAILURE),
]
