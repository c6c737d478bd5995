"""Q2's checks as a specification: every correct implementation keeps every point,
and each wrong one that students really write loses the points of its mistake.

These run the grader's own checks (public + hidden) in-process on the master
notebook's definitions with one function swapped; the sandbox path is tested in
test_grader_*.py.
"""
import textwrap

import pytest
from check_helpers import failed, grade
from check_helpers import with_code as _with_code
from hw10grader.assignment import QUESTIONS
from hw10kit.notebook import load_definitions


@pytest.fixture(scope="module")
def solution_ns():
    return load_definitions("source/hw10/hw10_vae.ipynb")


def with_code(solution_ns, code):
    return _with_code(solution_ns, code, BaseVAE=solution_ns["VAE"])


# ------------------------------------------------------------------ sample_gaussian
CORRECT_SAMPLERS = {
    "randn_like": "def sample_gaussian(m, v):\n    return m + torch.sqrt(v) * torch.randn_like(m)",
    "randn_with_device": "def sample_gaussian(m, v):\n"
                         "    return m + v.sqrt() * torch.randn(m.shape, device=m.device)",
    "normal_rsample": "def sample_gaussian(m, v):\n"
                      "    return torch.distributions.Normal(m, v.sqrt()).rsample()",
    "empty_like_normal_": "def sample_gaussian(m, v):\n"
                          "    return m + v ** 0.5 * torch.empty_like(m).normal_()",
    "helper_in_other_cell": "import math\n"
                            "def _noise(t):\n    return torch.randn(*t.shape, dtype=t.dtype)\n"
                            "def sample_gaussian(m, v):\n    return m + torch.exp(0.5 * torch.log(v)) * _noise(m)",
    "extra_random_calls": "def sample_gaussian(m, v):\n    torch.rand(7)\n"
                          "    eps = torch.randn_like(m)\n    torch.randn(3)\n    return eps * v.sqrt() + m",
}


@pytest.mark.parametrize("name", sorted(CORRECT_SAMPLERS))
def test_correct_sample_gaussian_keeps_every_point(solution_ns, name):
    results = grade(with_code(solution_ns, CORRECT_SAMPLERS[name]), "sample_gaussian")
    assert failed(results) == set(), results


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_correct_sample_gaussian_passes_for_other_seeds(solution_ns, seed):
    assert failed(grade(solution_ns, "sample_gaussian", seed)) == set()


WRONG_SAMPLERS = {
    # name: (code, checks that must fail)
    "std_and_variance_swapped": ("def sample_gaussian(m, v):\n    return m + v * torch.randn_like(m)",
                                 {"gradient w.r.t. v", "samples follow N(m, v) with v the variance"}),
    "torch_normal": ("def sample_gaussian(m, v):\n    return torch.normal(m, v.sqrt())",
                     {"gradient w.r.t. m", "gradient reaches v", "gradient w.r.t. v"}),
    "distribution_sample": ("def sample_gaussian(m, v):\n"
                            "    return torch.distributions.Normal(m, v.sqrt()).sample()",
                            {"gradient w.r.t. m", "gradient reaches v", "gradient w.r.t. v"}),
    "detached_noise_path": ("def sample_gaussian(m, v):\n"
                            "    return m + (v.sqrt() * torch.randn_like(m)).detach()",
                            {"gradient reaches v", "gradient w.r.t. v"}),
    "constant_eps": ("def sample_gaussian(m, v):\n    return m + v.sqrt() * 0.5",
                     {"samples follow N(m, v) with v the variance", "fresh noise for every element and call"}),
    "uniform_eps": ("def sample_gaussian(m, v):\n    return m + v.sqrt() * torch.rand_like(m)",
                    {"samples follow N(m, v) with v the variance"}),
    "centred_uniform_eps": ("def sample_gaussian(m, v):\n"
                            "    return m + v.sqrt() * (torch.rand_like(m) - 0.5) * 12 ** 0.5",
                            {"samples follow N(m, v) with v the variance"}),
    "one_eps_per_row_broadcast": ("def sample_gaussian(m, v):\n"
                                  "    return m + v.sqrt() * torch.randn(m.shape[-1])",
                                  {"fresh noise for every element and call"}),
    "reseeds_inside": ("def sample_gaussian(m, v):\n    torch.manual_seed(0)\n"
                       "    return m + v.sqrt() * torch.randn_like(m)",
                       {"fresh noise for every element and call"}),
    "returns_m": ("def sample_gaussian(m, v):\n    return m", {"samples follow N(m, v) with v the variance",
                                                             "gradient reaches v"}),
}


@pytest.mark.parametrize("name", sorted(WRONG_SAMPLERS))
def test_wrong_sample_gaussian_loses_its_points(solution_ns, name):
    code, must_fail = WRONG_SAMPLERS[name]
    results = grade(with_code(solution_ns, code), "sample_gaussian")
    assert must_fail <= failed(results), results


def test_variance_swap_feedback_names_the_convention(solution_ns):
    code, _ = WRONG_SAMPLERS["std_and_variance_swapped"]
    ok, message = grade(with_code(solution_ns, code), "sample_gaussian")["samples follow N(m, v) with v the variance"]
    assert not ok and "v is the variance" in message


# ------------------------------------------------------------------ negative_elbo_bound
ELBO_TEMPLATE = """
class VAE(BaseVAE):
    def negative_elbo_bound(self, x):
        m, v = self.enc.encode(x)
        pm, pv = self.z_prior_m.expand_as(m), self.z_prior_v.expand_as(v)
{body}
"""


def elbo(body):
    return ELBO_TEMPLATE.format(body=textwrap.indent(textwrap.dedent(body), " " * 8))


CORRECT_ELBOS = {
    "reference_style": elbo("""
        kl = kl_normal(m, v, pm, pv).mean()
        rec = -log_bernoulli_with_logits(x, self.dec.decode(sample_gaussian(m, v))).mean()
        return kl + rec, kl, rec"""),
    "closed_form_kl_and_bce": elbo("""
        kl = 0.5 * (v + m ** 2 - 1 - torch.log(v)).sum(1).mean()
        z = m + torch.randn_like(m) * v.sqrt()
        rec = F.binary_cross_entropy_with_logits(self.dec(z), x, reduction='sum') / x.shape[0]
        nelbo = rec + kl
        return nelbo, kl, rec"""),
    "distributions_api": elbo("""
        q = torch.distributions.Normal(m, v.sqrt())
        p = torch.distributions.Normal(torch.zeros_like(m), torch.ones_like(v))
        kl = torch.distributions.kl_divergence(q, p).sum(-1).mean()
        logits = self.dec.decode(q.rsample())
        rec = -torch.distributions.Bernoulli(logits=logits).log_prob(x).sum(-1).mean()
        return kl + rec, kl, rec"""),
    "via_net_and_gaussian_parameters": elbo("""
        m, v = gaussian_parameters(self.enc.net(x), dim=1)
        kl = kl_normal(m, v, pm, pv).mean()
        rec = -log_bernoulli_with_logits(x, self.dec.net(sample_gaussian(m, v))).mean()
        return kl + rec, kl, rec"""),
}


@pytest.mark.parametrize("name", sorted(CORRECT_ELBOS))
def test_correct_negative_elbo_keeps_every_point(solution_ns, name):
    results = grade(with_code(solution_ns, CORRECT_ELBOS[name]), "negative_elbo_bound")
    assert failed(results) == set(), results


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_correct_negative_elbo_passes_for_other_seeds(solution_ns, seed):
    assert failed(grade(solution_ns, "negative_elbo_bound", seed)) == set()


REC = "-log_bernoulli_with_logits(x, self.dec.decode(sample_gaussian(m, v)))"
WRONG_ELBOS = {
    "sum_over_batch": (elbo(f"""
        kl = kl_normal(m, v, pm, pv).sum()
        rec = ({REC}).sum()
        return kl + rec, kl, rec"""), {"KL term", "reconstruction term"}),
    "kl_wrong_sign": (elbo(f"""
        kl = -kl_normal(m, v, pm, pv).mean()
        rec = ({REC}).mean()
        return kl + rec, kl, rec"""), {"KL term"}),
    "kl_missing": (elbo(f"""
        rec = ({REC}).mean()
        kl = torch.zeros(())
        return rec, kl, rec"""), {"KL term"}),
    "sigmoid_before_with_logits": (elbo("""
        kl = kl_normal(m, v, pm, pv).mean()
        probs = torch.sigmoid(self.dec.decode(sample_gaussian(m, v)))
        rec = -log_bernoulli_with_logits(x, probs).mean()
        return kl + rec, kl, rec"""), {"reconstruction term"}),
    "rec_at_the_mean": (elbo("""
        kl = kl_normal(m, v, pm, pv).mean()
        rec = -log_bernoulli_with_logits(x, self.dec.decode(m)).mean()
        return kl + rec, kl, rec"""), {"rec uses one sample z ~ q(z|x)"}),
    "std_passed_as_variance": (elbo("""
        kl = kl_normal(m, v, pm, pv).mean()
        rec = -log_bernoulli_with_logits(x, self.dec.decode(m + v * torch.randn_like(m))).mean()
        return kl + rec, kl, rec"""), {"rec uses one sample z ~ q(z|x)"}),
    "nelbo_not_kl_plus_rec": (elbo(f"""
        kl = kl_normal(m, v, pm, pv).mean()
        rec = ({REC}).mean()
        return rec - kl, kl, rec"""), {"nelbo = kl + rec"}),
    "per_example_outputs": (elbo(f"""
        kl = kl_normal(m, v, pm, pv)
        rec = {REC}
        return kl + rec, kl, rec"""), {"returns three scalars", "KL term", "reconstruction term"}),
    "detached_sample": (elbo("""
        kl = kl_normal(m, v, pm, pv).mean()
        z = sample_gaussian(m, v).detach()
        rec = -log_bernoulli_with_logits(x, self.dec.decode(z)).mean()
        return kl + rec, kl, rec"""), {"gradient flows through the sample"}),
}


@pytest.mark.parametrize("name", sorted(WRONG_ELBOS))
def test_wrong_negative_elbo_loses_its_points(solution_ns, name):
    code, must_fail = WRONG_ELBOS[name]
    results = grade(with_code(solution_ns, code), "negative_elbo_bound")
    assert must_fail <= failed(results), results


def test_rec_at_the_mean_feedback_says_to_decode_a_sample(solution_ns):
    code, _ = WRONG_ELBOS["rec_at_the_mean"]
    ok, message = grade(with_code(solution_ns, code), "negative_elbo_bound")["rec uses one sample z ~ q(z|x)"]
    assert not ok and "z = m" in message


def test_sigmoid_feedback_says_to_pass_logits(solution_ns):
    code, _ = WRONG_ELBOS["sigmoid_before_with_logits"]
    ok, message = grade(with_code(solution_ns, code), "negative_elbo_bound")["reconstruction term"]
    assert not ok and "logits" in message


def test_every_stochastic_check_states_its_false_failure_bound():
    for q in QUESTIONS:
        for c in q.checks:
            assert c.false_failure <= 1e-9


@pytest.mark.slow
def test_solution_passes_200_gradings_with_different_seeds(solution_ns):
    for seed in range(200):
        for target in ("sample_gaussian", "negative_elbo_bound"):
            assert failed(grade(solution_ns, target, seed)) == set(), seed


def test_probing_negative_elbo_leaves_the_notebooks_sample_gaussian_in_place(solution_ns):
    ns = dict(solution_ns)
    original = ns["sample_gaussian"]
    grade(ns, "negative_elbo_bound")
    assert ns["sample_gaussian"] is original


def test_a_broken_sample_gaussian_does_not_fail_negative_elbo(solution_ns):
    ns = with_code(solution_ns, "def sample_gaussian(m, v):\n    return m + v * torch.randn_like(m)")
    assert failed(grade(ns, "negative_elbo_bound")) == set()


def test_an_unfinished_function_is_reported_once_as_not_implemented(capsys):
    from hw10kit.checks import check

    def sample_gaussian(m, v):
        raise NotImplementedError()

    report = check("sample_gaussian", {"sample_gaussian": sample_gaussian}, seed=0)
    out = capsys.readouterr().out
    assert not report
    assert out.count("not implemented yet") == 1 and "Traceback" not in out
    assert "`sample_gaussian` is not implemented yet" in out


def test_check_returns_a_true_report_when_all_pass_and_displays_nothing(solution_ns):
    from hw10kit.checks import check

    report = check("sample_gaussian", dict(solution_ns), seed=0)
    assert report and report._ipython_display_() is None


# ------------------------------------------------------------------ public checks and hints
PUBLIC_TITLES = {c.title for q in QUESTIONS for c in q.public}

#: Each mistake the notebook warns about, the public check that catches it, and a phrase of
#: the hint that must come first in its message.
PUBLIC_CATCHES = {
    "variance_for_std": ("sample_gaussian", WRONG_SAMPLERS["std_and_variance_swapped"][0],
                         "gradient w.r.t. v", "v is the variance"),
    "not_reparameterized": ("sample_gaussian", WRONG_SAMPLERS["torch_normal"][0],
                            "gradient w.r.t. m", "reparameterization"),
    "uniform_noise": ("sample_gaussian", WRONG_SAMPLERS["uniform_eps"][0],
                      "gradient w.r.t. v", "standard normal noise"),
    "sum_not_mean": ("negative_elbo_bound", WRONG_ELBOS["sum_over_batch"][0], "KL term", "summed over the batch"),
    "rec_sum_not_mean": ("negative_elbo_bound", WRONG_ELBOS["sum_over_batch"][0],
                         "reconstruction term", "summed over the batch"),
    "kl_sign": ("negative_elbo_bound", WRONG_ELBOS["kl_wrong_sign"][0], "KL term", "wrong sign"),
    "rec_sign": ("negative_elbo_bound", elbo(f"""
        kl = kl_normal(m, v, pm, pv).mean()
        rec = -({REC}).mean()
        return kl + rec, kl, rec"""), "reconstruction term", "wrong sign"),
    "kl_missing": ("negative_elbo_bound", WRONG_ELBOS["kl_missing"][0], "KL term", "missing"),
    "sigmoid_then_logits": ("negative_elbo_bound", WRONG_ELBOS["sigmoid_before_with_logits"][0],
                            "reconstruction term", "logits"),
    "detached_sample": ("negative_elbo_bound", WRONG_ELBOS["detached_sample"][0],
                        "gradient flows through the sample", "do not detach it"),
    "rec_at_the_mean": ("negative_elbo_bound", WRONG_ELBOS["rec_at_the_mean"][0],
                        "gradient flows through the sample", "no gradient reaches the encoder's variance"),
    "per_example": ("negative_elbo_bound", WRONG_ELBOS["per_example_outputs"][0],
                    "returns three scalars", "scalar averaged over the batch"),
    "nelbo_not_the_sum": ("negative_elbo_bound", WRONG_ELBOS["nelbo_not_kl_plus_rec"][0],
                          "nelbo = kl + rec", "kl + rec"),
}


@pytest.mark.parametrize("name", sorted(PUBLIC_CATCHES))
def test_a_public_check_catches_each_mistake_the_notebook_warns_about(solution_ns, name):
    target, code, title, hint = PUBLIC_CATCHES[name]
    assert title in PUBLIC_TITLES
    ok, message = grade(with_code(solution_ns, code), target)[title]
    assert not ok and hint in message, message


def test_the_variance_hint_comes_first_in_the_distribution_check(solution_ns):
    code, _ = WRONG_SAMPLERS["std_and_variance_swapped"]
    ok, message = grade(with_code(solution_ns, code), "sample_gaussian")["samples follow N(m, v) with v the variance"]
    assert not ok and message.startswith("the spread of z - m grows like v") and "torch.rand" not in message


def test_the_randn_hint_fires_for_unit_variance_uniform_noise(solution_ns):
    code, _ = WRONG_SAMPLERS["centred_uniform_eps"]
    ok, message = grade(with_code(solution_ns, code), "sample_gaussian")["samples follow N(m, v) with v the variance"]
    assert not ok and "use torch.randn, not torch.rand" in message


@pytest.mark.parametrize("name, hint", [("reseeds_inside", "draw new noise on every call"),
                                        ("one_eps_per_row_broadcast", "rows of the noise are identical")])
def test_fresh_noise_hints_name_their_mistake(solution_ns, name, hint):
    ok, message = grade(with_code(solution_ns, WRONG_SAMPLERS[name][0]), "sample_gaussian")[
        "fresh noise for every element and call"]
    assert not ok and hint in message


def test_noise_scaled_by_v_in_the_sample_gets_the_variance_hint(solution_ns):
    ok, message = grade(with_code(solution_ns, WRONG_ELBOS["std_passed_as_variance"][0]),
                        "negative_elbo_bound")["rec uses one sample z ~ q(z|x)"]
    assert not ok and "v is the variance" in message


# ------------------------------------------------------------------ degenerate answers
SAMPLER_REFERENCE_CHECKS = {"gradient w.r.t. v", "samples follow N(m, v) with v the variance"}
DEGENERATE_SAMPLERS = {
    "constant": "def sample_gaussian(m, v):\n    return torch.full_like(m, 0.5)",
    "input_unchanged": "def sample_gaussian(m, v):\n    return m",
    "scaled_by_1e-6": "def sample_gaussian(m, v):\n    return m + 1e-6 * v.sqrt() * torch.randn_like(m)",
    "zeros": "def sample_gaussian(m, v):\n    return torch.zeros_like(m) * v",
    "tiny_variance_noise": "def sample_gaussian(m, v):\n    return m + 1e-5 * v * torch.randn_like(m)",
    "tiny_and_not_random": "def sample_gaussian(m, v):\n    return m + 1e-6 * v",
}


@pytest.mark.parametrize("name", sorted(DEGENERATE_SAMPLERS))
def test_degenerate_samplers_fail_every_reference_check(solution_ns, name):
    results = grade(with_code(solution_ns, DEGENERATE_SAMPLERS[name]), "sample_gaussian")
    assert SAMPLER_REFERENCE_CHECKS <= failed(results), results


def _points_lost(solution_ns, code, target="sample_gaussian"):
    checks = {c.title: c.points for q in QUESTIONS if q.target == target for c in q.checks}
    return sum(checks[t] for t in failed(grade(with_code(solution_ns, code), target)))


def test_degenerate_samplers_score_no_more_than_the_plain_variance_swap(solution_ns):
    swap = _points_lost(solution_ns, WRONG_SAMPLERS["std_and_variance_swapped"][0])
    assert _points_lost(solution_ns, DEGENERATE_SAMPLERS["tiny_variance_noise"]) >= swap
    assert _points_lost(solution_ns, DEGENERATE_SAMPLERS["tiny_and_not_random"]) > swap


ELBO_REFERENCE_CHECKS = {"KL term", "reconstruction term", "KL term on other shapes",
                         "reconstruction term on other shapes", "rec uses one sample z ~ q(z|x)"}
DEGENERATE_ELBOS = {
    "zeros": elbo("""
        zero = (m * 0).sum()
        return zero, zero, zero"""),
    "constant": elbo("""
        one = torch.ones((), requires_grad=True)
        return 2 * one, one, one"""),
    "input_unchanged": elbo("""
        t = x.mean() + 0 * m.sum()
        return 2 * t, t, t"""),
    "scaled_by_1e-6": elbo(f"""
        kl = 1e-6 * kl_normal(m, v, pm, pv).mean()
        rec = 1e-6 * ({REC}).mean()
        return kl + rec, kl, rec"""),
}


@pytest.mark.parametrize("name", sorted(DEGENERATE_ELBOS))
def test_degenerate_negative_elbos_fail_every_reference_check(solution_ns, name):
    results = grade(with_code(solution_ns, DEGENERATE_ELBOS[name]), "negative_elbo_bound")
    assert ELBO_REFERENCE_CHECKS <= failed(results), results
