"""Q5's checks as a specification: every correct form of the Fisher, the EWC penalty and the
replay mixing keeps every point (a per-sample loop, torch.func with vmap, a batch-size-1
loop, a model left in either mode on entry), each mistake the notebook warns about fails a
public check whose hint names it, no hint fires on another mistake, and degenerate answers
fail every reference check."""
import numpy as np
import pytest
from check_helpers import failed, grade, public_titles, with_code
from hw10grader.assignment import QUESTIONS
from hw10kit.notebook import load_definitions

NOTEBOOK = "source/hw10/hw10_continual.ipynb"
TARGETS = ("estimate_fisher", "ewc_penalty", "mix_replay")


@pytest.fixture(scope="module")
def solution_ns():
    return load_definitions(NOTEBOOK)


@pytest.mark.parametrize("target", TARGETS)
def test_the_solution_keeps_every_point(solution_ns, target):
    for seed in (1, 2, 3):
        assert failed(grade(solution_ns, target, seed)) == set(), (target, seed)


# ------------------------------------------------------------------ estimate_fisher
def fisher_loop(square="g.pow(2)", reduce="/ len(xs)", mode="model.eval()", loss="-F.cross_entropy(out, y)",
                grads="torch.autograd.grad(logp, params)", cleanup=""):
    return f"""
import torch.nn.functional as F
def estimate_fisher(model, xs, ys):
    was = model.training
    {mode}
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    params = [p for p in model.parameters() if p.requires_grad]
    fisher = {{n: torch.zeros_like(p) for n, p in zip(names, params)}}
    for x, y in zip(xs, ys):
        out = model(x.unsqueeze(0))
        y = y.unsqueeze(0)
        logp = {loss}
        for n, g in zip(names, {grads}):
            fisher[n] += {square}
    {cleanup}
    model.train(was)
    return {{n: f {reduce} for n, f in fisher.items()}}
"""


BATCH_SQUARED = """
import torch.nn.functional as F
def estimate_fisher(model, xs, ys):
    model.eval()
    model.zero_grad()
    F.cross_entropy(model(xs), ys).backward()
    out = {n: p.grad.detach() ** 2 for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad()
    return out
"""

BACKWARD_LOOP = """
import torch.nn.functional as F
def estimate_fisher(model, xs, ys):
    model.eval()
    fisher = {n: torch.zeros_like(p) for n, p in model.named_parameters() if p.requires_grad}
    for i in range(len(xs)):
        model.zero_grad()
        F.nll_loss(F.log_softmax(model(xs[i:i + 1]), dim=1), ys[i:i + 1]).backward()
        for n, p in model.named_parameters():
            if p.requires_grad:
                fisher[n] += p.grad.detach() ** 2 / len(xs)
    {end}
    return fisher
"""

CORRECT_FISHER = {
    "autograd_loop": fisher_loop(),
    "backward_loop_set_to_none": BACKWARD_LOOP.replace("{end}", "model.zero_grad(set_to_none=True)"),
    "backward_loop_zeroed": BACKWARD_LOOP.replace("{end}", "model.zero_grad(set_to_none=False)"),
    "log_softmax_gather": fisher_loop(loss="F.log_softmax(out, dim=1).gather(1, y[:, None]).sum()"),
    "vmap": """
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap
def estimate_fisher(model, xs, ys):
    model.eval()
    params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    def logp(p, x, y):
        return -F.cross_entropy(functional_call(model, p, (x[None],)), y[None])
    g = vmap(grad(logp), in_dims=(None, 0, 0))(params, xs, ys)
    return {n: v.pow(2).mean(0) for n, v in g.items()}
""",
}


@pytest.mark.parametrize("name", sorted(CORRECT_FISHER))
def test_correct_fishers_keep_every_point(solution_ns, name):
    assert failed(grade(with_code(solution_ns, CORRECT_FISHER[name]), "estimate_fisher")) == set()


# ------------------------------------------------------------------ ewc_penalty
def penalty(term="fisher[n].detach() * (p - star_params[n].detach()) ** 2", reduce=".sum()", scale="lam / 2"):
    return f"""
def ewc_penalty(model, fisher, star_params, lam):
    total = 0
    for n, p in model.named_parameters():
        if n in fisher:
            total = total + ({term}){reduce}
    return {scale} * total
"""


CORRECT_PENALTY = {
    "over_fisher_items": """
def ewc_penalty(model, fisher, star_params, lam):
    params = dict(model.named_parameters())
    return 0.5 * lam * sum((f * (params[n] - star_params[n].detach()).pow(2)).sum() for n, f in fisher.items())
""",
    "stacked": """
def ewc_penalty(model, fisher, star_params, lam):
    terms = [(fisher[n] * (p - star_params[n].detach()).square()).sum()
             for n, p in model.named_parameters() if n in fisher]
    return lam / 2 * torch.stack(terms).sum()
""",
}


@pytest.mark.parametrize("name", sorted(CORRECT_PENALTY))
def test_correct_penalties_keep_every_point(solution_ns, name):
    assert failed(grade(with_code(solution_ns, CORRECT_PENALTY[name]), "ewc_penalty")) == set()


# ------------------------------------------------------------------ mix_replay
def mix(draw="idx = torch.randint(len(mem_x), (n_replay,))", x_idx="idx", y_idx="idx", empty=True):
    guard = "    if len(mem_x) == 0 or n_replay == 0:\n        return x_new, y_new\n" if empty else ""
    return (f"def mix_replay(x_new, y_new, mem_x, mem_y, n_replay):\n{guard}    {draw}\n"
            f"    return torch.cat([x_new, mem_x[{x_idx}]]), torch.cat([y_new, mem_y[{y_idx}]])\n")


CORRECT_MIX = {
    "without_replacement": mix(draw="idx = torch.randperm(len(mem_x))[:n_replay]"),
    "multinomial": mix(draw="idx = torch.multinomial(torch.ones(len(mem_x)), n_replay, replacement=True)"),
    "shuffled_output": """
def mix_replay(x_new, y_new, mem_x, mem_y, n_replay):
    if mem_x.shape[0] == 0:
        return x_new, y_new
    idx = torch.randint(0, mem_x.shape[0], (n_replay,), device=mem_x.device)
    x, y = torch.cat([x_new, mem_x[idx]]), torch.cat([y_new, mem_y[idx]])
    order = torch.randperm(len(x))
    return x[order], y[order]
""",
}


@pytest.mark.parametrize("name", sorted(CORRECT_MIX))
def test_correct_mixes_keep_every_point(solution_ns, name):
    assert failed(grade(with_code(solution_ns, CORRECT_MIX[name]), "mix_replay")) == set()


# ------------------------------------------------------------------ the public-catch table
#: Each mistake the notebook warns about: (function, wrong code, the public check that
#: catches it, a phrase of the hint its message must carry).
PUBLIC_CATCHES = {
    "fisher_squared_batch_gradient": ("estimate_fisher", BATCH_SQUARED,
                                      "value on a network with dropout, entered in train mode",
                                      "gradient of the whole batch was squared"),
    "fisher_squared_sum_of_sample_gradients": (
        "estimate_fisher", fisher_loop(square="g", reduce="** 2"),
        "value on a network with dropout, entered in train mode", "gradient of the whole batch was squared"),
    "fisher_sum_not_mean": ("estimate_fisher", fisher_loop(reduce=""),
                            "value on a network with dropout, entered in train mode", "average them over the samples"),
    "fisher_train_mode": ("estimate_fisher", fisher_loop(mode="pass"),
                          "value on a network with dropout, entered in train mode", "dropout on"),
    "fisher_logits_as_log_probs": ("estimate_fisher", fisher_loop(loss="-F.nll_loss(out, y)"),
                                   "value on a network with dropout, entered in train mode", "returns logits"),
    "fisher_attached": ("estimate_fisher", fisher_loop(grads="torch.autograd.grad(logp, params, create_graph=True)"),
                        "detached, and no gradient left in the model", "attached to the autograd graph"),
    "fisher_grads_left_behind": ("estimate_fisher", BACKWARD_LOOP.replace("{end}", ""),
                                 "detached, and no gradient left in the model", "left gradients in .grad"),
    "fisher_wrong_keys": ("estimate_fisher", """
def estimate_fisher(model, xs, ys):
    return [torch.zeros_like(p) for p in model.parameters()]
""", "one tensor per parameter, shaped like it", "should return a dict"),
    "penalty_missing_half": ("ewc_penalty", penalty(scale="lam"), "value", "the 1/2 is missing"),
    "penalty_missing_lambda": ("ewc_penalty", penalty(scale="0.5"), "value", "lam is missing"),
    "penalty_abs": ("ewc_penalty", penalty(term="fisher[n] * (p - star_params[n].detach()).abs()"), "value",
                    "uses |theta - theta*|"),
    "penalty_no_fisher": ("ewc_penalty", penalty(term="(p - star_params[n].detach()) ** 2"), "value",
                          "the Fisher is missing"),
    "penalty_mean": ("ewc_penalty", penalty(reduce=".mean()"), "value", "averages over each parameter's entries"),
    "penalty_star_attached": ("ewc_penalty", penalty(term="fisher[n] * (p - star_params[n]) ** 2"),
                              "theta* treated as a constant", "stored without .detach()"),
    "penalty_detached_params": ("ewc_penalty", penalty(term="fisher[n] * (p.detach() - star_params[n]) ** 2"),
                                "a scalar tensor with a gradient", "without a gradient"),
    "penalty_item": ("ewc_penalty", penalty(reduce=".sum().item()") + "    \n", "a scalar tensor with a gradient",
                     "should be a torch.Tensor"),
    "mix_labels_drawn_apart": ("mix_replay", mix(draw="idx = torch.randint(len(mem_x), (n_replay,)); "
                                                      "jdx = torch.randint(len(mem_x), (n_replay,))", y_idx="jdx"),
                               "each image keeps its own label", "belong to other images"),
    "mix_first_rows": ("mix_replay", mix(draw="idx = torch.arange(n_replay)"), "uniform draws, fresh at every call",
                       "every call drew the same memory rows"),
    "mix_seeded_inside": ("mix_replay", mix(draw="idx = torch.randint(len(mem_x), (n_replay,), "
                                                 "generator=torch.Generator().manual_seed(0))"),
                          "uniform draws, fresh at every call", "every call drew the same memory rows"),
    "mix_part_of_memory": ("mix_replay", mix(draw="idx = torch.randint(len(mem_x) // 2, (n_replay,))"),
                           "uniform draws, fresh at every call", "uniformly over the whole memory"),
    "mix_no_empty_guard": ("mix_replay", mix(empty=False), "an empty memory gives the new batch unchanged",
                           "check len(mem_x) == 0 first"),
    "mix_memory_only": ("mix_replay", """
def mix_replay(x_new, y_new, mem_x, mem_y, n_replay):
    if len(mem_x) == 0:
        return x_new, y_new
    idx = torch.randint(len(mem_x), (n_replay,))
    return mem_x[idx], mem_y[idx]
""", "the new batch and n_replay memory rows", "new examples followed by n_replay"),
}


@pytest.mark.parametrize("name", sorted(PUBLIC_CATCHES))
def test_a_public_check_catches_each_mistake_the_notebook_warns_about(solution_ns, name):
    target, code, title, hint = PUBLIC_CATCHES[name]
    assert title in public_titles(target)
    ok, message = grade(with_code(solution_ns, code), target)[title]
    assert not ok and hint in message, message


def test_a_hint_never_fires_on_another_mistake(solution_ns):
    """Each hint phrase appears only in the messages of the mistakes it names."""
    results = {name: grade(with_code(solution_ns, code), target)
               for name, (target, code, _, _) in PUBLIC_CATCHES.items()}
    for name, (target, _, _, hint) in PUBLIC_CATCHES.items():
        for other, (t2, _, _, hint2) in PUBLIC_CATCHES.items():
            if t2 == target and hint2 != hint and hint2 not in hint:
                assert all(hint2 not in msg for ok, msg in results[name].values()), (name, hint2)


def test_the_fisher_check_uses_its_own_network_whatever_the_student_defines(solution_ns):
    """A notebook's own networks and globals do not change the reference: the probe builds
    the network from the check's weights."""
    ns = with_code(solution_ns, "model = torch.nn.Linear(3, 2)\nMLP = None\nCourseCNN = None")
    assert failed(grade(ns, "estimate_fisher")) == set()


DEGENERATE = {
    "estimate_fisher": {
        "zeros": "def estimate_fisher(model, xs, ys):\n"
                 "    return {n: torch.zeros_like(p) for n, p in model.named_parameters() if p.requires_grad}",
        "weights": "def estimate_fisher(model, xs, ys):\n"
                   "    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}",
        "constant": "def estimate_fisher(model, xs, ys):\n"
                    "    return {n: torch.full_like(p, 0.1) for n, p in model.named_parameters() if p.requires_grad}",
        "scaled": CORRECT_FISHER["autograd_loop"].replace("/ len(xs)", "* 1e-6 / len(xs)"),
    },
    "ewc_penalty": {
        "zeros": "def ewc_penalty(model, fisher, star_params, lam):\n"
                 "    return sum((0 * p).sum() for p in model.parameters())",
        "constant": "def ewc_penalty(model, fisher, star_params, lam):\n"
                    "    return sum((0 * p).sum() for p in model.parameters()) + 1.0",
        "scaled": penalty(scale="1e-6 * lam / 2"),
    },
    "mix_replay": {
        "input": "def mix_replay(x_new, y_new, mem_x, mem_y, n_replay):\n    return x_new, y_new",
        "zeros": mix().replace("mem_x[idx]", "0 * mem_x[idx]"),
        "scaled": mix().replace("mem_x[idx]", "1e-6 * mem_x[idx]"),
    },
}


@pytest.mark.parametrize("target,name", [(t, n) for t in DEGENERATE for n in DEGENERATE[t]])
def test_degenerate_answers_fail_every_reference_check(solution_ns, target, name):
    (q,) = [q for q in QUESTIONS if q.target == target]
    reference_checks = {c.title for c in q.checks if c.reference or c in q.hidden}
    if target == "mix_replay":  # no formula to compare with: the row and distribution checks
        reference_checks = {"the new batch and n_replay memory rows", "uniform draws, fresh at every call",
                            *{c.title for c in q.hidden}}
    assert reference_checks <= failed(grade(with_code(solution_ns, DEGENERATE[target][name]), target))


# ------------------------------------------------------------------ the bounds
def test_the_chernoff_band_holds_for_both_sampling_schemes():
    """Simulated false-failure rates far below the stated 1e-9-per-check bound, and the band
    is tight enough to catch half the memory."""
    from hw10kit.checks.continual import chernoff_bounds

    low, high = chernoff_bounds(600 * 10 / 20, 1e-9 / 20)
    assert 100 < low < 300 < high < 500
    rng = np.random.default_rng(0)
    for _ in range(200):
        with_rep = np.bincount(rng.integers(0, 20, (600, 10)).ravel(), minlength=20)
        without = np.bincount(np.argsort(rng.random((600, 20)), 1)[:, :10].ravel(), minlength=20)
        assert low <= with_rep.min() and with_rep.max() <= high
        assert low <= without.min() and without.max() <= high
    assert 600 * 10 / 10 > high  # rows drawn from half the memory twice as often: caught
