"""Q3's checks as a specification: every correct way to write the GAN losses keeps every
point, and each wrong one that students really write loses the points of its mistake,
caught by a public check whose message names it.

These run the grader's own checks (public + hidden) in-process on the master
notebook's definitions with one function swapped; the sandbox path is tested in
test_grader_*.py.
"""
import pytest
from check_helpers import failed, grade, public_titles, with_code
from hw10kit.checks.gan import EXTREME_TITLE as EXTREME
from hw10kit.notebook import load_definitions

D, NS, MM = "loss_nonsaturating_d", "loss_nonsaturating_g", "loss_minimax_g"


@pytest.fixture(scope="module")
def solution_ns():
    return load_definitions("source/hw10/hw10_gan.ipynb")


Z = "    z = torch.randn(x_real.shape[0], g.dim_z, device=device)\n"

# ------------------------------------------------------------------ correct forms
CORRECT = {
    D: {
        "logsigmoid": "def loss_nonsaturating_d(g, d, x_real, *, device):\n" + Z +
                      "    fake = g(z).detach()\n"
                      "    return -F.logsigmoid(d(x_real)).mean() - F.logsigmoid(-d(fake)).mean()",
        "bce_with_logits": "def loss_nonsaturating_d(g, d, x_real, *, device):\n" + Z +
                           "    lr, lf = d(x_real), d(g(z).detach())\n"
                           "    return (F.binary_cross_entropy_with_logits(lr, torch.ones_like(lr))\n"
                           "            + F.binary_cross_entropy_with_logits(lf, torch.zeros_like(lf)))",
        "one_d_call_on_a_concatenated_batch": "def loss_nonsaturating_d(g, d, x_real, *, device):\n" + Z +
                           "    with torch.no_grad():\n        fake = g(z)\n"
                           "    logits = d(torch.cat([x_real, fake]))\n"
                           "    B = x_real.shape[0]\n"
                           "    return F.softplus(-logits[:B]).mean() + F.softplus(logits[B:]).mean()",
        "helper_in_another_cell": "def _bce(l, target):\n"
                                  "    return F.binary_cross_entropy_with_logits(l, torch.full_like(l, target))\n"
                                  "def loss_nonsaturating_d(g, d, x_real, *, device):\n"
                                  "    z = torch.randn((len(x_real), g.dim_z)).to(device)\n"
                                  "    return _bce(d(x_real), 1.0) + _bce(d(g(z).detach()), 0.0)",
        "extra_random_calls": "def loss_nonsaturating_d(g, d, x_real, *, device):\n"
                              "    torch.rand(5)\n" + Z +
                              "    return F.softplus(-d(x_real)).mean() + F.softplus(d(g(z).detach())).mean()",
    },
    NS: {
        "logsigmoid": "def loss_nonsaturating_g(g, d, x_real, *, device):\n" + Z +
                      "    return -F.logsigmoid(d(g(z))).mean()",
        "bce_with_logits": "def loss_nonsaturating_g(g, d, x_real, *, device):\n" + Z +
                           "    l = d(g(z))\n    return F.binary_cross_entropy_with_logits(l, torch.ones_like(l))",
    },
    MM: {
        "logsigmoid": "def loss_minimax_g(g, d, x_real, *, device):\n" + Z +
                      "    return F.logsigmoid(-d(g(z))).mean()",
        "minus_bce": "def loss_minimax_g(g, d, x_real, *, device):\n" + Z +
                     "    l = d(g(z))\n    return -F.binary_cross_entropy_with_logits(l, torch.zeros_like(l))",
    },
}


@pytest.mark.parametrize("target, name", [(t, n) for t in CORRECT for n in sorted(CORRECT[t])])
def test_correct_losses_keep_every_point(solution_ns, target, name):
    results = grade(with_code(solution_ns, CORRECT[target][name]), target)
    assert failed(results) == set(), results


@pytest.mark.parametrize("seed", [0, 1, 7])
@pytest.mark.parametrize("target", [D, NS, MM])
def test_the_solution_passes_for_other_seeds(solution_ns, target, seed):
    assert failed(grade(solution_ns, target, seed)) == set()


# ------------------------------------------------------------------ wrong forms
#: name: (target, code, public check that catches it, phrase of its message)
WRONG = {
    "d_log_of_sigmoid": (D, "def loss_nonsaturating_d(g, d, x_real, *, device):\n" + Z +
                         "    return (-torch.log(torch.sigmoid(d(x_real))).mean()\n"
                         "            - torch.log(1 - torch.sigmoid(d(g(z).detach()))).mean())",
                         EXTREME, "F.logsigmoid"),
    "d_clamped_log_of_sigmoid": (D, "def loss_nonsaturating_d(g, d, x_real, *, device):\n" + Z +
                                 "    p, q = torch.sigmoid(d(x_real)), torch.sigmoid(d(g(z).detach()))\n"
                                 "    return -torch.log(p + 1e-8).mean() - torch.log(1 - q + 1e-8).mean()",
                                 EXTREME, "-log(1e-08)"),
    "d_labels_swapped": (D, "def loss_nonsaturating_d(g, d, x_real, *, device):\n" + Z +
                         "    return F.softplus(d(x_real)).mean() + F.softplus(-d(g(z).detach())).mean()",
                         "value", "labels are swapped"),
    "d_wrong_sign": (D, "def loss_nonsaturating_d(g, d, x_real, *, device):\n" + Z +
                     "    return -(F.softplus(-d(x_real)).mean() + F.softplus(d(g(z).detach())).mean())",
                     "value", "wrong sign"),
    "d_sum_not_mean": (D, "def loss_nonsaturating_d(g, d, x_real, *, device):\n" + Z +
                       "    return F.softplus(-d(x_real)).sum() + F.softplus(d(g(z).detach())).sum()",
                       "value", "summed over the batch"),
    "d_mean_over_the_concatenation": (D, "def loss_nonsaturating_d(g, d, x_real, *, device):\n" + Z +
                                      "    l = d(torch.cat([x_real, g(z).detach()]))\n"
                                      "    y = torch.cat([torch.ones(len(x_real)), torch.zeros(len(x_real))])\n"
                                      "    return F.binary_cross_entropy_with_logits(l, y)",
                                      "value", "half the expected value"),
    "d_missing_real_term": (D, "def loss_nonsaturating_d(g, d, x_real, *, device):\n" + Z +
                            "    return F.softplus(d(g(z).detach())).mean()", "value", "real-data term"),
    "d_missing_detach": (D, "def loss_nonsaturating_d(g, d, x_real, *, device):\n" + Z +
                         "    return F.softplus(-d(x_real)).mean() + F.softplus(d(g(z))).mean()",
                         "gradients reach D, not G", "detach the fake"),
    "d_fixed_batch_of_z": (D, "def loss_nonsaturating_d(g, d, x_real, *, device):\n"
                           "    z = torch.randn(64, g.dim_z, device=device)\n"
                           "    return F.softplus(-d(x_real)).mean() + F.softplus(d(g(z).detach())).mean()",
                           "value", "x_real has"),
    "ns_is_the_minimax_form": (NS, "def loss_nonsaturating_g(g, d, x_real, *, device):\n" + Z +
                               "    return -F.softplus(d(g(z))).mean()", "value", "minimax (saturating)"),
    "ns_detached_generator": (NS, "def loss_nonsaturating_g(g, d, x_real, *, device):\n" + Z +
                              "    return F.softplus(-d(g(z).detach())).mean()",
                              "gradient reaches the generator", "no gradient reaches the generator"),
    "ns_wrong_sign": (NS, "def loss_nonsaturating_g(g, d, x_real, *, device):\n" + Z +
                      "    return F.logsigmoid(d(g(z))).mean()", "value", "wrong sign"),
    "ns_log_of_sigmoid": (NS, "def loss_nonsaturating_g(g, d, x_real, *, device):\n" + Z +
                          "    return -torch.log(torch.sigmoid(d(g(z)))).mean()",
                          EXTREME, "F.logsigmoid"),
    "ns_sum": (NS, "def loss_nonsaturating_g(g, d, x_real, *, device):\n" + Z +
               "    return F.softplus(-d(g(z))).sum()", "value", "summed over the batch"),
    "mm_is_the_non_saturating_form": (MM, "def loss_minimax_g(g, d, x_real, *, device):\n" + Z +
                                      "    return F.softplus(-d(g(z))).mean()", "value", "non-saturating loss"),
    "mm_log_one_minus_sigmoid": (MM, "def loss_minimax_g(g, d, x_real, *, device):\n" + Z +
                                 "    return torch.log(1 - torch.sigmoid(d(g(z)))).mean()",
                                 EXTREME, "F.logsigmoid"),
    "mm_wrong_sign": (MM, "def loss_minimax_g(g, d, x_real, *, device):\n" + Z +
                      "    return F.softplus(d(g(z))).mean()", "value", "wrong sign"),
    "mm_under_no_grad": (MM, "def loss_minimax_g(g, d, x_real, *, device):\n" + Z +
                         "    with torch.no_grad():\n        x = g(z)\n"
                         "    return -F.softplus(d(x)).mean()", "gradient reaches the generator",
                         "no gradient reaches the generator"),
}


@pytest.mark.parametrize("name", sorted(WRONG))
def test_a_public_check_catches_each_mistake_and_names_it(solution_ns, name):
    target, code, title, hint = WRONG[name]
    assert title in public_titles(target)
    ok, message = grade(with_code(solution_ns, code), target)[title]
    assert not ok and hint in message, message


# ------------------------------------------------------------------ degenerate answers
DEGENERATE = {
    "constant": "    return torch.tensor(0.7, requires_grad=True)",
    "zeros": "    return 0 * d(x_real).sum()",
    "input_unchanged": "    return x_real.mean() + 0 * d(x_real).sum()",
}
REFERENCE_CHECKS = {"value", EXTREME}


@pytest.mark.parametrize("kind", sorted(DEGENERATE) + ["scaled_by_1e-6"])
@pytest.mark.parametrize("target", [D, NS, MM])
def test_degenerate_losses_fail_every_reference_check(solution_ns, target, kind):
    if kind == "scaled_by_1e-6":
        ns = dict(solution_ns)
        right = solution_ns[target]
        ns[target] = lambda g, d, x_real, *, device: 1e-6 * right(g, d, x_real, device=device)
    else:
        ns = with_code(solution_ns, f"def {target}(g, d, x_real, *, device):\n" + DEGENERATE[kind])
    assert REFERENCE_CHECKS <= failed(grade(ns, target))


def test_an_unfinished_loss_is_reported_once(capsys):
    from hw10kit.checks import check

    def loss_minimax_g(g, d, x_real, *, device):
        raise NotImplementedError()

    assert not check("loss_minimax_g", {"loss_minimax_g": loss_minimax_g}, seed=0)
    assert capsys.readouterr().out.count("not implemented yet") == 1


@pytest.mark.parametrize("draw", [
    "torch.randn(x_real.shape[0], g.dim_z).to(device)",
    "torch.randn((len(x_real), g.dim_z), device=x_real.device, dtype=torch.float32)",
    "torch.empty(x_real.shape[0], g.dim_z, device=device).normal_()",
    "torch.randn(x_real.shape[0], g.dim_z, generator=GEN).to(device)",
])
def test_every_right_way_to_draw_z_keeps_every_point(solution_ns, draw):
    """z ~ N(0, I), float32, (B, g.dim_z), on `device`, fresh on every call: however it is
    drawn (a private torch.Generator made once included), it keeps every point."""
    code = ("GEN = torch.Generator().manual_seed(3)\n"
            "def loss_nonsaturating_g(g, d, x_real, *, device):\n"
            f"    z = {draw}\n"
            "    return F.softplus(-d(g(z))).mean()")
    assert failed(grade(with_code(solution_ns, code), NS)) == set()
