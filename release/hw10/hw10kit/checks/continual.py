"""Public checks for Problem 5 (continual learning). The grader runs these and its hidden checks.

* ``estimate_fisher(model, xs, ys)``: the empirical Fisher, the mean over the samples of the
  squared per-sample gradient of log p(y_i | x_i) (y_i the label), in eval mode; a dict
  {parameter name: tensor shaped like it} over the parameters that require grad.
* ``ewc_penalty(model, fisher, star_params, lam)``: (lam / 2) sum_i F_i (theta_i - theta*_i)^2,
  a scalar whose gradient reaches the model's parameters and not theta*.
* ``mix_replay(x_new, y_new, mem_x, mem_y, n_replay)``: the new batch and n_replay examples
  drawn uniformly at random from the memory, each with its own label.

The Fisher and the penalty are checked on a small network of the check's own (the probe
builds it from weights in the inputs, with dropout): the expected values come from the judge
(``hw10grader.hidden.continual.REFERENCES``), in a notebook from the values the build stored
on these checks' fixed inputs. This module holds input designs and comparisons only.
"""
from __future__ import annotations

import math

import numpy as np

from . import continual_probes as probes
from .core import Check, close_rel, expected_verdict

NOTEBOOK, KEYWORD = "hw10_continual.ipynb", "continual"
Q5B, Q5C = "Q5(b)", "Q5(c)"
FISHER, PENALTY, MIX = "estimate_fisher", "ewc_penalty", "mix_replay"
NAMES = probes.NAMES
FALSE_FAILURE = 1e-9


# ------------------------------------------------------------------ input designs
def net_design(d=5, h=6, k=4, n=9, mode="train", stale=False, frozen=False):
    """Weights of the check's network, a batch with labels, the mode on entry."""
    def make(rng):
        f32 = np.float32
        return {"W1": rng.normal(0, 0.8, (h, d)).astype(f32), "b1": rng.normal(0, 0.3, h).astype(f32),
                "W2": rng.normal(0, 0.9, (k, h)).astype(f32), "b2": rng.normal(0, 0.3, k).astype(f32),
                "gain": rng.uniform(0.6, 1.5, k).astype(f32) if frozen else None,
                "xs": rng.normal(0, 1.0, (n, d)).astype(f32), "ys": rng.integers(0, k, n).astype(np.int64),
                "mode": mode, "stale_grad": bool(stale)}
    return make


def penalty_design(d=5, h=6, k=4, lam=3.7, frozen=False):
    """The network's weights theta, an anchor theta* near them, a Fisher (non-negative,
    spread over three orders of magnitude), lam (neither 1 nor 2)."""
    base = net_design(d, h, k, frozen=frozen)

    def make(rng):
        inputs = base(rng)
        shapes = {"fc1.weight": (h, d), "fc1.bias": (h,), "fc2.weight": (k, h), "fc2.bias": (k,)}
        theta = dict(zip(NAMES, (inputs["W1"], inputs["b1"], inputs["W2"], inputs["b2"])))
        inputs["star"] = {n: (theta[n] + rng.normal(0, 0.4, s)).astype(np.float32) for n, s in shapes.items()}
        inputs["fisher"] = {n: (10.0 ** rng.uniform(-2, 1, s)).astype(np.float32) for n, s in shapes.items()}
        inputs["lam"] = float(lam)
        return inputs
    return make


def mix_design(batch=6, memory=20, n_replay=10, dim=4, calls=600, image=False):
    """A new batch and a memory whose rows carry an id in their first entry (1000 + j for
    new row j, i for memory row i), labels 0..9."""
    def make(rng):
        def rows(n, start):
            x = rng.normal(0, 1, (n, dim)).astype(np.float32)
            x[:, 0] = np.arange(start, start + n)
            return x.reshape((n, 1, 2, dim // 2)) if image else x
        return {"x_new": rows(batch, 1000), "y_new": rng.integers(0, 10, batch).astype(np.int64),
                "mem_x": rows(memory, 0), "mem_y": rng.integers(0, 10, memory).astype(np.int64),
                "n_replay": int(n_replay), "calls": int(calls)}
    return make


# ------------------------------------------------------------------ estimate_fisher
TRAIN_MODE = ("a forward pass ran in train mode, with dropout on: the Fisher of the trained network is "
              "that of its deterministic (eval-mode) predictions. Call model.eval() first (and "
              "model.train(was_training) at the end, to leave the mode as you found it)")


def fisher_structure(inputs, out):
    """One tensor per parameter that requires grad, shaped like it."""
    fisher = out["fisher"]
    want = {"fc1.weight": list(np.shape(inputs["W1"])), "fc1.bias": list(np.shape(inputs["b1"])),
            "fc2.weight": list(np.shape(inputs["W2"])), "fc2.bias": list(np.shape(inputs["b2"]))}
    missing = [n for n in want if n not in fisher]
    extra = [n for n in fisher if n not in want]
    if missing:
        return False, (f"the dict has no entry for {', '.join(missing)}: key it by "
                       "model.named_parameters() names, one entry per parameter that requires grad")
    if extra:
        frozen = [n for n in extra if n == "gain"]
        return False, (f"unexpected entries {', '.join(extra)}: "
                       + ("a frozen parameter (requires_grad=False) gets no Fisher entry" if frozen
                          else "the keys are model.named_parameters() names, nothing else"))
    for name, shape in want.items():
        if fisher[name]["shape"] != shape:
            return False, (f"the Fisher of {name} has shape {tuple(fisher[name]['shape'])}, expected "
                           f"{tuple(shape)}: one value per entry of the parameter")
    return True, "one tensor per parameter, shaped like it"


def fisher_hygiene(inputs, out):
    """Detached values, no gradient left in the model, weights untouched."""
    attached = [n for n, r in out["fisher"].items() if r["attached"]]
    if attached:
        return False, (f"the Fisher of {', '.join(attached)} is attached to the autograd graph: "
                       "square detached gradients (torch.autograd.grad, or p.grad.detach()) or compute "
                       "under torch.no_grad(), so that EWC does not backpropagate through it")
    if out["grads_left"]:
        return False, (f"estimate_fisher left gradients in .grad of {', '.join(out['grads_left'])}: "
                       "they would be added to the next training step's gradients. Call "
                       "model.zero_grad() after the last backward(), or use torch.autograd.grad / "
                       "torch.func, which leave .grad alone")
    if out["weights_changed"]:
        return False, (f"estimate_fisher changed the weights {', '.join(out['weights_changed'])}: it "
                       "only measures, it takes no optimizer step")
    return True, "detached tensors; no gradient left in the model; weights untouched"


def fisher_value(inputs, out):
    """Every parameter's Fisher against the reference (mistakes matched on all of them)."""
    ok, message = fisher_structure(inputs, out)
    if not ok:
        return ok, message
    expected = inputs["expected"]
    fallback = TRAIN_MODE if out["train_forward"] else None
    return dict_verdict(out["fisher"], expected, "the Fisher", FISHER_FORMULA, fallback)


FISHER_FORMULA = "mean over samples of (d log p(y_i | x_i) / d theta)^2, in eval mode"


def dict_verdict(got: dict, expected: dict, what: str, formula: str, fallback=None, rtol=1e-4):
    """``expected_verdict`` for a dict of arrays, one comparison per name: passes when every
    entry is right; a mistake's hint is said when every entry matches that mistake."""
    want = expected["value"]
    values = {n: np.asarray(got[n]["value"] if isinstance(got[n], dict) else got[n], np.float64) for n in want}
    wrong = [n for n in want if not close_rel(values[n], want[n], rtol=rtol)]
    if not wrong:
        return True, f"{what} is correct for every parameter: {formula}"
    # the first wrong entry's numbers, the hint of the mistake that matches every entry
    ok, message = expected_verdict(values[wrong[0]], {"value": want[wrong[0]], "mistakes": []},
                                   what=f"{what} of {wrong[0]}", formula=formula, rtol=rtol)
    hint = next((m["hint"] for m in expected.get("mistakes", [])
                 if all(close_rel(values[n], m["value"][n], rtol=rtol) for n in want)), fallback)
    return False, message + (f": {hint}" if hint else "")


# ------------------------------------------------------------------ ewc_penalty
PENALTY_FORMULA = "(lam / 2) sum_i F_i (theta_i - theta*_i)^2"
GRAD_FORMULA = "lam F_i (theta_i - theta*_i)"


def penalty_scalar(inputs, out):
    if out["shape"] != []:
        return False, (f"ewc_penalty returned shape {tuple(out['shape'])}, expected a scalar (shape ()): "
                       "sum over every parameter and every entry")
    if not out["requires_grad"]:
        return False, ("ewc_penalty returned a tensor without a gradient: build it from the model's "
                       "parameters (model.named_parameters()), with no .detach(), .data, .item() or "
                       "torch.no_grad() on the way")
    return True, "a scalar tensor with a gradient"


def penalty_value(inputs, out):
    return expected_verdict(np.asarray(out["value"], np.float64), inputs["expected"], what="the penalty",
                            formula=PENALTY_FORMULA)


def penalty_grad(inputs, out):
    ok, message = penalty_scalar(inputs, out)
    if not ok:
        return ok, message
    none = [n for n, g in out["grads"].items() if g is None]
    if none:
        return False, (f"the penalty's gradient does not reach {', '.join(none)}: take theta from "
                       "model.named_parameters() itself (not a copy, .data or .detach())")
    return dict_verdict(out["grads"], inputs["expected"], "the penalty's gradient", GRAD_FORMULA)


def penalty_detached(inputs, out):
    ok, message = penalty_grad(inputs, out)
    if ok:
        return True, "theta* is a constant: the gradient is lam F (theta - theta*) whatever theta* is attached to"
    grads = out.get("grads") or {}
    if grads and all(g is not None and np.allclose(np.asarray(g, np.float64), 0) for g in grads.values()):
        return False, ("the gradient vanishes when theta* was stored without .detach() (clones of the "
                       "parameters, still attached to the graph): the gradient also flows through "
                       "theta* and cancels. Use star_params[name].detach() (and fisher[name].detach()) "
                       "in the penalty")
    return ok, message


# ------------------------------------------------------------------ mix_replay
def _mix_shape_problem(inputs, out) -> str | None:
    b, n = len(inputs["x_new"]), int(inputs["n_replay"])
    row = list(np.shape(inputs["x_new"])[1:])
    want = [[b + n, *row], [b + n]]
    if out["shapes"] != [want]:
        got = ", ".join(f"x {tuple(a)} and y {tuple(c)}" for a, c in out["shapes"])
        return (f"mix_replay returned {got}; expected x {tuple(want[0])} and y {tuple(want[1])}: the "
                f"{b} new examples followed by n_replay = {n} from the memory (torch.cat along dim 0)")
    return None


def mix_rows(inputs, out):
    problem = _mix_shape_problem(inputs, out)
    if problem:
        return False, problem
    if out["y_dtypes"] != ["int64"]:
        return False, f"the labels came back as {', '.join(out['y_dtypes'])}; keep them int64 (a LongTensor)"
    if out["unknown"]:
        return False, (f"{out['unknown']} returned rows are neither new examples nor memory rows: return "
                       "the examples themselves, unchanged (no scaling, noise or zeros)")
    if not out["new_once"]:
        return False, "every example of the new batch must come back exactly once, unchanged"
    n = int(inputs["n_replay"])
    if any(k != n for k in out["per_call"]):
        return False, f"each call should add n_replay = {n} memory rows; it added {sorted(set(out['per_call']))}"
    if out["inputs_changed"]:
        return False, "mix_replay modified its inputs in place: build new tensors (torch.cat) instead"
    return True, f"the new batch once and {n} memory rows in every call"


def mix_labels(inputs, out):
    problem = _mix_shape_problem(inputs, out)
    if problem:
        return False, problem
    if out["mismatched"]:
        return False, (f"{out['mismatched']} returned labels belong to other images: draw one index tensor "
                       "and index the memory's images and labels with the same indices")
    return True, "every returned image keeps its own label"


def mix_empty(inputs, out):
    if not out["same"]:
        return False, (f"with an empty memory (the first task) mix_replay returned x of shape "
                       f"{tuple(out['shape'])}, not the new batch unchanged. {probes.EMPTY_HINT}")
    return True, "an empty memory gives the new batch unchanged"


def chernoff_bounds(mu: float, delta: float) -> tuple:
    """Counts (low, high) outside which a sum of independent Bernoulli variables with mean
    ``mu`` falls with probability at most ``delta`` / 2 on each side (Chernoff:
    P(X >= (1+e) mu) <= exp(-e^2 mu / (2 + e)), P(X <= (1-e) mu) <= exp(-e^2 mu / 2))."""
    log = math.log(2 / delta)
    down = math.sqrt(2 * log / mu)
    up = (log + math.sqrt(log * log + 8 * mu * log)) / (2 * mu)  # solves e^2 mu = log (2 + e)
    return (1 - down) * mu, (1 + up) * mu


def mix_uniform(inputs, out):
    """Over ``calls`` calls every memory row is drawn about calls * n_replay / M times.

    Each row's count is a sum of independent Bernoulli variables with mean
    mu = calls * n_replay / M whether the draws are with replacement (calls * n_replay draws,
    each the row with probability 1/M) or without (calls draws, each holding the row with
    probability n_replay / M); a Chernoff bound per row and side at 1e-9 / (2 M) bounds the
    false failure of the whole check by 1e-9, whatever the student's random calls."""
    problem = _mix_shape_problem(inputs, out)
    if problem:
        return False, problem
    counts = np.asarray(out["counts"], float)
    m, calls, n = len(counts), int(inputs["calls"]), int(inputs["n_replay"])
    if out["unknown"] or any(k != n for k in out["per_call"]):
        return False, "the rows drawn are not memory rows, n_replay per call: see the check above"
    low, high = chernoff_bounds(calls * n / m, FALSE_FAILURE / m)
    if out["same_as_last"] == calls - 1:
        return False, ("every call drew the same memory rows: draw fresh random indices at each call "
                       "(torch.randint or torch.randperm, not seeded inside the function, nor the first "
                       "n_replay rows)")
    bad = [i for i, c in enumerate(counts) if not low <= c <= high]
    if bad:
        i = bad[0]
        return False, (f"over {calls} calls memory row {i} was drawn {int(counts[i])} times; uniform draws "
                       f"give {calls * n / m:.0f} (between {low:.0f} and {high:.0f} but for a chance below "
                       "1e-9): draw the indices uniformly over the whole memory (torch.randint(len(mem_x), "
                       "(n_replay,)))")
    return True, f"every memory row is drawn about equally often over {calls} calls (Chernoff, 1e-9)"


PUBLIC = [
    Check(Q5B, FISHER, "one tensor per parameter, shaped like it", 0.5, net_design(), probes.fisher_call,
          fisher_structure),
    Check(Q5B, FISHER, "value on a network with dropout, entered in train mode", 1.5, net_design(),
          probes.fisher_call, fisher_value, reference="fisher"),
    Check(Q5B, FISHER, "detached, and no gradient left in the model", 0.5, net_design(), probes.fisher_call,
          fisher_hygiene),
    Check(Q5B, PENALTY, "a scalar tensor with a gradient", 0.25, penalty_design(), probes.penalty_call,
          penalty_scalar),
    Check(Q5B, PENALTY, "value", 1.0, penalty_design(), probes.penalty_call, penalty_value,
          reference="penalty"),
    Check(Q5B, PENALTY, "gradient reaches the parameters", 0.75, penalty_design(), probes.penalty_call,
          penalty_grad, reference="penalty_grad"),
    Check(Q5B, PENALTY, "theta* treated as a constant", 0.5, penalty_design(), probes.penalty_attached_call,
          penalty_detached, reference="penalty_grad"),
    Check(Q5C, MIX, "the new batch and n_replay memory rows", 0.5, mix_design(calls=50), probes.mix_call,
          mix_rows),
    Check(Q5C, MIX, "each image keeps its own label", 0.75, mix_design(calls=50), probes.mix_call, mix_labels),
    Check(Q5C, MIX, "an empty memory gives the new batch unchanged", 0.25, mix_design(), probes.mix_empty_call,
          mix_empty),
    Check(Q5C, MIX, "uniform draws, fresh at every call", 1.0, mix_design(), probes.mix_call, mix_uniform,
          false_failure=FALSE_FAILURE),
]
