"""Q4's checks as a specification: every correct form of the diffusion closed forms keeps
every point, each mistake the notebook warns about fails a public check whose hint names
it, and degenerate answers fail every reference check. The solution is cross-checked
against diffusers' DDPMScheduler (0-based index k is t = k + 1)."""
import numpy as np
import pytest
import torch
from check_helpers import failed, grade, with_code
from hw10grader.assignment import QUESTIONS
from hw10kit.notebook import load_definitions

NOTEBOOK = "source/hw10/hw10_diffusion.ipynb"
TARGETS = ("alpha_bar", "q_xt_given_x0", "q_sample", "q_posterior")


@pytest.fixture(scope="module")
def solution_ns():
    return load_definitions(NOTEBOOK)


def test_the_solution_keeps_every_point(solution_ns):
    for target in TARGETS:
        for seed in (1, 2, 3):
            assert failed(grade(solution_ns, target, seed)) == set(), (target, seed)


CORRECT = {
    "alpha_bar_log_space": ("alpha_bar", "def alpha_bar(betas):\n    return torch.exp(torch.cumsum(torch.log1p(-betas), 0))"),
    "alpha_bar_loop": ("alpha_bar", """
        def alpha_bar(betas):
            out, prod = [], torch.ones((), dtype=betas.dtype)
            for b in betas:
                prod = prod * (1 - b)
                out.append(prod)
            return torch.stack(out)"""),
    "q_xt_gather_and_helper": ("q_xt_given_x0", """
        def _per_sample(values, x):
            return values.view(-1, *([1] * (x.dim() - 1)))
        def q_xt_given_x0(x0, t, betas):
            ab = _per_sample(torch.gather(alpha_bar(betas), 0, t - 1), x0)
            return torch.sqrt(ab) * x0, (1 - ab) * torch.ones_like(x0)"""),
    "q_sample_direct": ("q_sample", """
        def q_sample(x0, t, betas, noise):
            ab = torch.cumprod(1 - betas, 0)[t - 1].reshape(-1, *[1] * (x0.dim() - 1))
            return ab.sqrt() * x0 + (1 - ab).sqrt() * noise"""),
    "q_posterior_where": ("q_posterior", """
        def q_posterior(x0, xt, t, betas):
            shape = (-1,) + (1,) * (x0.dim() - 1)
            ab = alpha_bar(betas)
            ab_t = ab[t - 1].reshape(shape)
            ab_prev = torch.where(t > 1, ab[(t - 2).clamp(min=0)], torch.ones_like(ab[t - 1])).reshape(shape)
            b = betas[t - 1].reshape(shape)
            var = b * (1 - ab_prev) / (1 - ab_t)
            mean = var * ((1 - b).sqrt() / b * xt + ab_prev.sqrt() / (1 - ab_prev).clamp(min=1e-300) * x0)
            mean = torch.where((t == 1).reshape(shape), x0, mean)
            return mean, var.expand_as(x0)"""),
}


@pytest.mark.parametrize("name", sorted(CORRECT))
def test_correct_forms_keep_every_point(solution_ns, name):
    target, code = CORRECT[name]
    assert failed(grade(with_code(solution_ns, code), target)) == set()


def test_a_variance_that_only_broadcasts_loses_only_the_shape_point(solution_ns):
    code = """
        def q_xt_given_x0(x0, t, betas):
            ab = alpha_bar(betas)[t - 1].reshape(-1, *[1] * (x0.dim() - 1))
            return ab.sqrt() * x0, 1 - ab"""
    assert failed(grade(with_code(solution_ns, code), "q_xt_given_x0")) == {"mean and variance have the shape of x0"}


PUBLIC_TITLES = {c.title for q in QUESTIONS for c in q.public}
XT = "ab = alpha_bar(betas)[{i}].reshape(-1, *[1] * (x0.dim() - 1))\n"


def xt(index="t - 1", mean="ab.sqrt() * x0", var="(1 - ab).expand_as(x0)"):
    return ("def q_xt_given_x0(x0, t, betas):\n    " + XT.format(i=index)
            + f"    return {mean}, {var}\n")


def post(x0_coef="abp.sqrt() * b / (1 - ab)", xt_coef="(1 - b).sqrt() * (1 - abp) / (1 - ab)",
         var="((1 - abp) / (1 - ab) * b).expand_as(x0)", abp="full[t - 1]"):
    return f"""
def q_posterior(x0, xt, t, betas):
    s = (-1,) + (1,) * (x0.dim() - 1)
    full = torch.cat([torch.ones(1, dtype=betas.dtype), alpha_bar(betas)])
    ab, abp, b = full[t].reshape(s), ({abp}).reshape(s), betas[t - 1].reshape(s)
    return ({x0_coef}) * x0 + ({xt_coef}) * xt, {var}
"""


#: Each mistake the notebook warns about: (function, wrong code, the public check that
#: catches it, a phrase of the hint its message must carry).
PUBLIC_CATCHES = {
    "alpha_bar_shifted": ("alpha_bar", "def alpha_bar(betas):\n    c = torch.cumprod(1 - betas, 0)\n"
                          "    return torch.cat([torch.ones(1, dtype=c.dtype), c[:-1]])",
                          "values on a random schedule", "shifted by one"),
    "alpha_bar_is_alpha": ("alpha_bar", "def alpha_bar(betas):\n    return 1 - betas",
                           "values on a random schedule", "that is alpha_t"),
    "alpha_bar_of_betas": ("alpha_bar", "def alpha_bar(betas):\n    return torch.cumprod(betas, 0)",
                           "values on a random schedule", "product of the betas"),
    "t_as_0_based": ("q_xt_given_x0", xt(index="t"), "mean over a batch of mixed t", "with values in 1..T"),
    "t_minus_2": ("q_xt_given_x0", xt(index="t - 2"), "mean over a batch of mixed t", "off by one in t"),
    "alpha_for_alpha_bar": ("q_xt_given_x0", "def q_xt_given_x0(x0, t, betas):\n"
                            "    a = (1 - betas)[t - 1].reshape(-1, *[1] * (x0.dim() - 1))\n"
                            "    return a.sqrt() * x0, (1 - a).expand_as(x0)\n",
                            "mean over a batch of mixed t", "alpha_t and abar_t are confused"),
    "std_for_variance": ("q_xt_given_x0", xt(var="(1 - ab).sqrt().expand_as(x0)"),
                         "variance over a batch of mixed t", "standard deviation"),
    "abar_not_sqrt": ("q_xt_given_x0", xt(mean="ab * x0"), "mean over a batch of mixed t", "not abar_t x0"),
    "first_t_for_all": ("q_xt_given_x0", xt(index="t[0] - 1").replace(".reshape(-1, *[1] * (x0.dim() - 1))", ""),
                        "mean over a batch of mixed t", "every sample has its own t"),
    "noise_ignored": ("q_sample", "def q_sample(x0, t, betas, noise):\n"
                      "    m, v = q_xt_given_x0(x0, t, betas)\n    return m + v.sqrt() * torch.randn_like(x0)",
                      "uses the given noise and draws nothing", "Use the `noise` argument"),
    "noise_by_variance": ("q_sample", "def q_sample(x0, t, betas, noise):\n"
                          "    m, v = q_xt_given_x0(x0, t, betas)\n    return m + v * noise",
                          "value over a batch of mixed t", "standard deviation sqrt(1 - abar_t)"),
    "posterior_swapped": ("q_posterior", post(x0_coef="(1 - b).sqrt() * (1 - abp) / (1 - ab)",
                                              xt_coef="abp.sqrt() * b / (1 - ab)"),
                          "mean over a batch of mixed t, t = 1 included", "swapped"),
    "posterior_abar_t_in_x0_coef": ("q_posterior", post(x0_coef="ab.sqrt() * b / (1 - ab)"),
                                    "mean over a batch of mixed t, t = 1 included", "sqrt(abar_t) where"),
    "posterior_wraps_at_t_1": ("q_posterior", post(abp="alpha_bar(betas)[t - 2]"),
                               "mean over a batch of mixed t, t = 1 included", "wraps around"),
    "posterior_std": ("q_posterior", post(var="((1 - abp) / (1 - ab) * b).sqrt().expand_as(x0)"),
                      "variance over a batch of mixed t, t = 1 included", "standard deviation"),
    "posterior_var_beta": ("q_posterior", post(var="b.expand_as(x0)"),
                           "variance over a batch of mixed t, t = 1 included", "that is beta_t"),
}


@pytest.mark.parametrize("name", sorted(PUBLIC_CATCHES))
def test_a_public_check_catches_each_mistake_the_notebook_warns_about(solution_ns, name):
    target, code, title, hint = PUBLIC_CATCHES[name]
    assert title in PUBLIC_TITLES
    ok, message = grade(with_code(solution_ns, code), target)[title]
    assert not ok and hint in message, message


def test_a_hint_never_fires_on_another_mistake(solution_ns):
    """Each hint phrase appears only in the messages of the mistakes it names."""
    for name, (target, code, _, hint) in PUBLIC_CATCHES.items():
        results = grade(with_code(solution_ns, code), target)
        for other, (t2, _, _, hint2) in PUBLIC_CATCHES.items():
            if t2 == target and hint2 != hint and hint2 not in hint:
                assert all(hint2 not in msg for ok, msg in results.values()), (name, hint2)


DEGENERATE = {
    "alpha_bar": {"zeros": "def alpha_bar(betas):\n    return torch.zeros_like(betas)",
                  "input": "def alpha_bar(betas):\n    return betas",
                  "scaled": "def alpha_bar(betas):\n    return 1e-6 * torch.cumprod(1 - betas, 0)"},
    "q_xt_given_x0": {"zeros": "def q_xt_given_x0(x0, t, betas):\n    return 0 * x0, 0 * x0",
                      "input": "def q_xt_given_x0(x0, t, betas):\n    return x0, x0",
                      "constant": "def q_xt_given_x0(x0, t, betas):\n    return torch.full_like(x0, .5), torch.full_like(x0, .5)"},
    "q_sample": {"input": "def q_sample(x0, t, betas, noise):\n    return x0",
                 "noise": "def q_sample(x0, t, betas, noise):\n    return noise",
                 "scaled": "def q_sample(x0, t, betas, noise):\n    m, v = q_xt_given_x0(x0, t, betas)\n"
                           "    return 1e-6 * (m + v.sqrt() * noise)"},
    "q_posterior": {"zeros": "def q_posterior(x0, xt, t, betas):\n    return 0 * x0, 0 * x0",
                    "input": "def q_posterior(x0, xt, t, betas):\n    return x0, xt",
                    "scaled": post(x0_coef="1e-6 * abp.sqrt() * b / (1 - ab)",
                                   xt_coef="1e-6 * (1 - b).sqrt() * (1 - abp) / (1 - ab)",
                                   var="1e-6 * ((1 - abp) / (1 - ab) * b).expand_as(x0)")},
}


@pytest.mark.parametrize("target,name", [(t, n) for t in DEGENERATE for n in DEGENERATE[t]])
def test_degenerate_answers_fail_every_reference_check(solution_ns, target, name):
    (q,) = [q for q in QUESTIONS if q.target == target]
    reference_checks = {c.title for c in q.checks if c.reference or c in q.hidden}
    assert reference_checks <= failed(grade(with_code(solution_ns, DEGENERATE[target][name]), target))


# ------------------------------------------------------------------ diffusers cross-check
@pytest.fixture(scope="module")
def scheduler():
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=50, beta_start=1e-4, beta_end=0.2, beta_schedule="linear",
                         clip_sample=False, prediction_type="sample", variance_type="fixed_small")


def test_alpha_bar_is_diffusers_alphas_cumprod(solution_ns, scheduler):
    got = solution_ns["alpha_bar"](scheduler.betas.double())
    assert torch.allclose(got, scheduler.alphas_cumprod.double(), rtol=1e-5)


def test_q_sample_is_diffusers_add_noise_at_index_t_minus_1(solution_ns, scheduler):
    gen = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(6, 1, 4, 4, generator=gen), torch.randn(6, 1, 4, 4, generator=gen)
    t = torch.tensor([1, 2, 10, 25, 49, 50])
    want = scheduler.add_noise(x0, noise, t - 1)
    assert torch.allclose(solution_ns["q_sample"](x0, t, scheduler.betas, noise), want, atol=1e-5)


@pytest.mark.parametrize("t", [1, 2, 17, 50])
def test_q_posterior_is_the_mean_and_variance_diffusers_step_uses(solution_ns, scheduler, t):
    scheduler.set_timesteps(50)
    gen = torch.Generator().manual_seed(t)
    x0, xt = torch.randn(3, 5, generator=gen), torch.randn(3, 5, generator=gen)
    out = scheduler.step(x0, t - 1, xt, generator=torch.Generator().manual_seed(7)).prev_sample
    var = scheduler._get_variance(t - 1) if t > 1 else torch.tensor(0.0)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(7))
    mean, got_var = solution_ns["q_posterior"](x0, xt, torch.full((3,), t), scheduler.betas)
    assert torch.allclose(got_var, torch.full_like(x0, float(var)), rtol=1e-4, atol=1e-12)
    # both in float32: 1 - abar_1 = beta_1 = 1e-4 keeps only about 4 digits, hence rtol 1e-3
    assert torch.allclose(mean, out - (var.sqrt() * noise if t > 1 else 0), rtol=1e-3, atol=1e-5)
