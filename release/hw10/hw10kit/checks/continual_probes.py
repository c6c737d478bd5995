"""Probes for Problem 5 (continual learning): they call the student's functions on a small
network of the check's own and report plain data. They hold no reference values.

The network (``ProbeNet``) is built here from weights in the inputs, so the student's
choice of model cannot change what is expected: logits = gain * (W2 drop(tanh(W1 x + b1))
+ b2), with dropout (p = 0.5) between the layers, so that a Fisher estimated in train mode
shows, and an optional frozen ``gain`` (requires_grad=False). Every forward pass records
whether the network was in train mode.

Inputs: ``W1`` (h, d), ``b1`` (h,), ``W2`` (k, h), ``b2`` (k,), ``gain`` (k,) or None;
``xs`` (N, d), ``ys`` (N,) int64 in 0..k-1; ``mode`` "train" or "eval" on entry;
``stale_grad``: .grad filled with junk on entry (as a training loop leaves it).
"""
from __future__ import annotations

from .core import ProbeError, lookup, student_traceback, tensor_out, to_numpy

EMPTY_HINT = ("With an empty memory, return the new batch unchanged: check len(mem_x) == 0 first "
              "(torch.randint cannot draw from an empty range)")
NAMES = ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias")


def _probe_net(inputs: dict):
    import torch
    import torch.nn as nn

    class ProbeNet(nn.Module):
        """The check's network: Linear, tanh, Dropout(0.5), Linear (, a frozen gain)."""

        def __init__(self):
            super().__init__()
            W1, W2 = inputs["W1"], inputs["W2"]
            self.fc1 = nn.Linear(W1.shape[1], W1.shape[0])
            self.drop = nn.Dropout(0.5)
            self.fc2 = nn.Linear(W2.shape[1], W2.shape[0])
            if inputs.get("gain") is not None:
                self.gain = nn.Parameter(torch.tensor(inputs["gain"], dtype=torch.float32), requires_grad=False)
            else:
                self.gain = None
            self.modes = []

        def forward(self, x):
            self.modes.append(bool(self.training))
            out = self.fc2(self.drop(torch.tanh(self.fc1(x))))
            return out if self.gain is None else out * self.gain

    net = ProbeNet()
    _set_weights(net, {n: inputs[k] for k, n in zip(("W1", "b1", "W2", "b2"), NAMES)})
    return net


def _set_weights(net, weights: dict) -> None:
    """Copy ``weights`` ({parameter name: array}) into ``net`` in place."""
    import torch

    params = dict(net.named_parameters())
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(torch.as_tensor(value))


def _grads_report(net, before: dict) -> list:
    """Names of the parameters whose .grad the call changed to something non-zero."""
    import torch

    left = []
    for name, p in net.named_parameters():
        g, old = p.grad, before.get(name)
        if g is None or not bool(torch.any(g != 0)):
            continue
        if old is not None and g.shape == old.shape and torch.equal(g, old):
            continue
        left.append(name)
    return left


def fisher_call(ns: dict, inputs: dict) -> dict:
    """``estimate_fisher(net, xs, ys)`` on the check's network: what it returned (names,
    shapes, values, whether attached to the graph), whether any forward pass ran in train
    mode, and which gradients it left in the network."""
    import torch

    net = _probe_net(inputs)
    net.train(inputs.get("mode", "train") == "train")
    before = {}
    if inputs.get("stale_grad"):
        gen = torch.Generator().manual_seed(7)
        for name, p in net.named_parameters():
            if p.requires_grad:
                p.grad = torch.randn(p.shape, generator=gen)
                before[name] = p.grad.clone()
    xs = torch.tensor(inputs["xs"])
    ys = torch.tensor(inputs["ys"], dtype=torch.long)
    weights = {n: p.detach().clone() for n, p in net.named_parameters()}
    out = lookup(ns, "estimate_fisher")(net, xs, ys)
    if not isinstance(out, dict):
        raise ProbeError(f"estimate_fisher should return a dict {{parameter name: tensor}}, but it returned "
                         f"a {type(out).__name__}")
    report = {}
    for name, value in out.items():
        value = tensor_out(value, f"the Fisher entry {name!r}")
        report[str(name)] = {"shape": list(value.shape), "value": to_numpy(value),
                             "attached": bool(value.requires_grad or value.grad_fn is not None)}
    return {"fisher": report, "train_forward": any(net.modes), "forwards": len(net.modes),
            "grads_left": _grads_report(net, before),
            "weights_changed": [n for n, p in net.named_parameters() if not torch.equal(p.detach(), weights[n])]}


def _tensor_dict(inputs: dict, key: str, names) -> dict:
    import torch

    return {n: torch.tensor(inputs[key][n]) for n in names}


def _penalty_once(ns: dict, inputs: dict, attached: bool) -> dict:
    """One call of ``ewc_penalty`` and its backward pass. ``attached``: theta* given as
    clones of the network's own parameters (attached to the graph) taken at theta*, after
    which the weights move to theta, as happens when theta* is stored without .detach()."""
    import torch

    names = [n for n, p in _probe_net(inputs).named_parameters() if p.requires_grad]
    fisher = _tensor_dict(inputs, "fisher", names)
    if attached:
        net = _probe_net(inputs)
        theta = {n: p.detach().clone() for n, p in net.named_parameters() if p.requires_grad}
        _set_weights(net, inputs["star"])
        star = {n: p.clone() for n, p in net.named_parameters() if p.requires_grad}  # no .detach()
        _set_weights(net, theta)
    else:
        net = _probe_net(inputs)
        star = _tensor_dict(inputs, "star", names)
    value = lookup(ns, "ewc_penalty")(net, fisher, star, float(inputs["lam"]))
    value = tensor_out(value, "ewc_penalty's return value")
    report = {"shape": list(value.shape), "value": to_numpy(value), "requires_grad": bool(value.requires_grad)}
    grads = {}
    if value.requires_grad and value.numel() == 1:
        net.zero_grad(set_to_none=True)
        value.sum().backward()
        grads = {n: (None if p.grad is None else to_numpy(p.grad)) for n, p in net.named_parameters()
                 if p.requires_grad}
    report["grads"] = grads
    return report


def penalty_call(ns: dict, inputs: dict) -> dict:
    """``ewc_penalty(net, fisher, star, lam)`` with theta* as plain tensors: the value, its
    shape, whether it has a gradient, and the gradient it puts on each parameter."""
    return _penalty_once(ns, inputs, attached=False)


def penalty_attached_call(ns: dict, inputs: dict) -> dict:
    """The same with theta* attached to the graph (clones of the parameters)."""
    return _penalty_once(ns, inputs, attached=True)


def _identify(x_out, y_out, inputs) -> dict:
    """Which row of the new batch or of the memory each output row is (by its id in
    column 0, then the whole row), and whether its label is that row's."""
    import numpy as np

    x_new, y_new = np.asarray(inputs["x_new"]), np.asarray(inputs["y_new"])
    mem_x, mem_y = np.asarray(inputs["mem_x"]), np.asarray(inputs["mem_y"])
    flat_new, flat_mem = x_new.reshape(len(x_new), -1), mem_x.reshape(len(mem_x), -1)
    new_count = np.zeros(len(x_new), int)
    drawn, unknown, mismatched = [], 0, 0
    for row, label in zip(x_out.reshape(len(x_out), -1), y_out):
        ident = int(round(float(row[0])))
        if 0 <= ident - 1000 < len(flat_new) and np.array_equal(row, flat_new[ident - 1000]):
            new_count[ident - 1000] += 1
            mismatched += int(label != y_new[ident - 1000])
        elif 0 <= ident < len(flat_mem) and np.array_equal(row, flat_mem[ident]):
            drawn.append(ident)
            mismatched += int(label != mem_y[ident])
        else:
            unknown += 1
    return {"new_count": new_count, "drawn": drawn, "unknown": unknown, "mismatched": mismatched}


def mix_call(ns: dict, inputs: dict) -> dict:
    """``mix_replay(x_new, y_new, mem_x, mem_y, n_replay)`` ``calls`` times: the shapes, how
    often each new row came back, which memory rows were drawn (counted per row over all
    calls), labels that do not belong to their image, rows from neither, consecutive calls
    that drew the same rows, and whether the inputs were modified."""
    import numpy as np
    import torch

    fn = lookup(ns, "mix_replay")
    x_new, y_new = torch.tensor(inputs["x_new"]), torch.tensor(inputs["y_new"], dtype=torch.long)
    mem_x, mem_y = torch.tensor(inputs["mem_x"]), torch.tensor(inputs["mem_y"], dtype=torch.long)
    n = int(inputs["n_replay"])
    copies = [t.clone() for t in (x_new, y_new, mem_x, mem_y)]
    shapes, new_ok, per_call, unknown, mismatched, same_as_last = set(), True, [], 0, 0, 0
    counts = np.zeros(len(inputs["mem_x"]), int)
    last = None
    dtypes = set()
    for _ in range(int(inputs["calls"])):
        result = fn(x_new, y_new, mem_x, mem_y, n)
        if not isinstance(result, (tuple, list)) or len(result) != 2:
            raise ProbeError(f"mix_replay should return a tuple (x, y), but it returned {type(result).__name__}")
        xo, yo = (tensor_out(result[0], "x (item 0)"), tensor_out(result[1], "y (item 1)"))
        shapes.add((tuple(xo.shape), tuple(yo.shape)))
        dtypes.add(str(yo.dtype).replace("torch.", ""))
        if xo.shape[0] != yo.shape[0] or tuple(xo.shape[1:]) != tuple(x_new.shape[1:]):
            break
        found = _identify(xo.detach().cpu().numpy(), yo.detach().cpu().numpy(), inputs)
        new_ok = new_ok and bool(np.all(found["new_count"] == 1))
        per_call.append(len(found["drawn"]))
        unknown += found["unknown"]
        mismatched += found["mismatched"]
        np.add.at(counts, found["drawn"], 1)
        key = sorted(found["drawn"])
        same_as_last += int(last is not None and key == last)
        last = key
    changed = not all(torch.equal(a, b) for a, b in zip(copies, (x_new, y_new, mem_x, mem_y)))
    return {"shapes": sorted([list(a), list(b)] for a, b in shapes), "y_dtypes": sorted(dtypes),
            "new_once": new_ok, "per_call": per_call, "unknown": unknown, "mismatched": mismatched,
            "counts": counts, "same_as_last": same_as_last, "inputs_changed": changed}


def mix_empty_call(ns: dict, inputs: dict) -> dict:
    """``mix_replay`` with an empty memory (the first task): is the new batch returned
    unchanged?"""
    import torch

    fn = lookup(ns, "mix_replay")
    x_new, y_new = torch.tensor(inputs["x_new"]), torch.tensor(inputs["y_new"], dtype=torch.long)
    mem_x, mem_y = torch.tensor(inputs["mem_x"])[:0], torch.tensor(inputs["mem_y"], dtype=torch.long)[:0]
    try:
        out = fn(x_new, y_new, mem_x, mem_y, int(inputs["n_replay"]))
    except NotImplementedError:
        raise
    except Exception as exc:  # noqa: BLE001 - reported with what to do
        raise ProbeError(f"mix_replay raised an exception with an empty memory (as on the first task):\n"
                         f"{student_traceback(exc)}\n{EMPTY_HINT}") from None
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise ProbeError(f"mix_replay should return a tuple (x, y), but it returned {type(out).__name__}")
    xo, yo = tensor_out(out[0], "x (item 0)"), tensor_out(out[1], "y (item 1)")
    same = (tuple(xo.shape) == tuple(x_new.shape) and tuple(yo.shape) == tuple(y_new.shape)
            and torch.equal(xo.detach().cpu(), x_new) and torch.equal(yo.detach().cpu().long(), y_new))
    return {"same": bool(same), "shape": list(xo.shape), "y_shape": list(yo.shape)}
