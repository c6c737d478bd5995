"""Issue 29 ("Grader round 3") for the GAN losses: submissions a reviewer found graded
wrongly, each written as a student would, run through the grader's own checks (public +
hidden) in-process. One behaviour per test."""
import sys

import numpy as np
import pytest
import torch
from check_helpers import failed, grade, public_titles, with_code
from hw10grader.hidden import gan as hidden
from hw10kit import gan_training as gt
from hw10kit.checks import gan, gan_probes, stats
from hw10kit.checks.core import ProbeError
from hw10kit.notebook import load_definitions

D, NS, MM = gan.D_LOSS, gan.NS_G, gan.MM_G
EXTREME, Z_FORMAT, Z_NORMAL = gan.EXTREME_TITLE, gan.Z_FORMAT_TITLE, gan.Z_NORMAL_TITLE
Z = "    z = torch.randn(x_real.shape[0], g.dim_z, device=device)\n"


@pytest.fixture(scope="module")
def solution_ns():
    return load_definitions("source/hw10/hw10_gan.ipynb")


def ns_loss(draw: str, *, setup: str = "") -> str:
    """A correct non-saturating generator loss whose z is drawn by ``draw``."""
    return (setup + "def loss_nonsaturating_g(g, d, x_real, *, device):\n" + draw
            + "    return F.softplus(-d(g(z))).mean()")


def only(results, titles, phrase=None):
    """The checks that failed are exactly ``titles``; the first names ``phrase``."""
    assert failed(results) == set(titles), {t: m for t, (ok, m) in results.items() if not ok}
    if phrase is not None:
        message = results[titles[0]][1]
        assert phrase in message, message


# ------------------------------------------------------------------ 1. how z is drawn
def test_z_from_torch_rand_fails_the_normal_check_and_is_told_to_use_randn(solution_ns):
    code = ns_loss("    z = torch.rand(x_real.shape[0], g.dim_z, device=device)\n")
    only(grade(with_code(solution_ns, code), NS), [Z_NORMAL], "torch.rand draws uniform noise; use torch.randn")


def test_z_of_zeros_fails_the_normal_check(solution_ns):
    code = ns_loss("    z = torch.zeros(x_real.shape[0], g.dim_z, device=device)\n")
    only(grade(with_code(solution_ns, code), NS), [Z_NORMAL], "z is all zeros")


def test_z_with_the_wrong_spread_fails_the_normal_check(solution_ns):
    code = ns_loss("    z = 0.9 * torch.randn(x_real.shape[0], g.dim_z, device=device)\n")
    only(grade(with_code(solution_ns, code), NS), [Z_NORMAL], "variance 0.8")


def test_uniform_z_of_unit_variance_fails_the_normality_test(solution_ns):
    """The normality test has power: 19 200 draws tell a unit-variance uniform from N(0, 1)."""
    code = ns_loss("    z = (torch.rand(x_real.shape[0], g.dim_z, device=device) - 0.5) * 12 ** 0.5\n")
    only(grade(with_code(solution_ns, code), NS), [Z_NORMAL], "Kolmogorov-Smirnov")


def test_z_cached_across_calls_fails_the_fresh_check(solution_ns):
    code = ns_loss("    key = (x_real.shape[0], g.dim_z, str(device))\n"
                   "    if key not in CACHE:\n"
                   "        CACHE[key] = torch.randn(x_real.shape[0], g.dim_z, device=device)\n"
                   "    z = CACHE[key]\n", setup="CACHE = {}\n")
    only(grade(with_code(solution_ns, code), NS), [Z_NORMAL], "two calls drew the same z")


def test_reseeding_inside_the_loss_fails_the_fresh_check(solution_ns):
    code = ns_loss("    torch.manual_seed(0)\n" + Z)
    only(grade(with_code(solution_ns, code), NS), [Z_NORMAL], "torch.manual_seed")


def test_one_row_of_z_repeated_over_the_batch_fails_the_normal_check(solution_ns):
    code = ns_loss("    z = torch.randn(1, g.dim_z, device=device).expand(x_real.shape[0], -1)\n")
    only(grade(with_code(solution_ns, code), NS), [Z_NORMAL], "rows or columns of z are identical")


def test_z_in_float64_fails_and_the_format_check_names_the_dtype(solution_ns):
    """The course's generator raises on float64 z (training crashes), so every check fails,
    and the z check says why."""
    code = ns_loss("    z = torch.randn(x_real.shape[0], g.dim_z, dtype=torch.float64, device=device)\n")
    results = grade(with_code(solution_ns, code), NS)
    assert failed(results) == set(results)
    assert "z is float64" in results[Z_FORMAT][1] and "torch.randn" in results[Z_FORMAT][1]
    assert "mat1 and mat2 must have the same dtype" in results["value"][1]


def test_z_left_on_the_cpu_fails_the_format_check(solution_ns):
    """The probe passes device=torch.device('meta') once, with the networks there: a z made
    without device= stays on the CPU and is caught, on a CPU-only grader."""
    code = ns_loss("    z = torch.randn(x_real.shape[0], g.dim_z)\n")
    only(grade(with_code(solution_ns, code), NS), [Z_FORMAT], "z is made on the cpu")


def test_labels_made_on_the_cpu_fail_the_format_check(solution_ns):
    code = ("def loss_nonsaturating_g(g, d, x_real, *, device):\n" + Z +
            "    return F.binary_cross_entropy_with_logits(d(g(z)), torch.ones(x_real.shape[0]))")
    only(grade(with_code(solution_ns, code), NS), [Z_FORMAT], "not on the CPU")


def test_the_z_checks_state_their_false_failure_bound():
    titles = {c.title: c for c in gan.PUBLIC if c.target == NS}
    assert titles[Z_NORMAL].false_failure <= 1e-9


def test_correct_z_passes_the_normal_verdict_over_many_seeds():
    """The verdict uses only the distribution of z (DELTA / 3 for each of three tests):
    a correct draw passes whatever generator produced it."""
    inputs = gan.training_like(NS)(np.random.default_rng(0))
    for seed in range(300):
        rng = np.random.default_rng(seed)
        calls = [{"error": None, "g_calls": [{"z": rng.standard_normal((100, 64)).astype(np.float32),
                                              "shape": [100, 64], "dtype": "float32", "device": "cpu"}]}
                 for _ in range(gan_probes.CALLS)]
        ok, message = gan.z_normal_verdict(inputs, {"calls": calls, "meta": None})
        assert ok, (seed, message)
    assert stats.DELTA == 1e-9


# ------------------------------------------------------------------ 2. the networks refuse what the course's refuse
BAD_IMAGES = {
    "flattened": lambda: torch.rand(6, 784),
    "channel_dropped": lambda: torch.rand(6, 28, 28),
    "float64": lambda: torch.rand(6, 1, 28, 28, dtype=torch.float64),
    "bfloat16": lambda: torch.rand(6, 1, 28, 28, dtype=torch.bfloat16),
    "a_list": lambda: [[0.0] * 784] * 6,
    "one_unbatched_image": lambda: torch.rand(1, 28, 28),
}
BAD_Z = {
    "float64": lambda: torch.randn(6, 64, dtype=torch.float64),
    "wrong_dim_z": lambda: torch.randn(6, 32),
    "one_dimensional": lambda: torch.randn(64),
    "batch_of_one": lambda: torch.randn(1, 64),
    "three_dimensional": lambda: torch.randn(2, 6, 64),
    "integers": lambda: torch.zeros(6, 64, dtype=torch.long),
    "a_list": lambda: [0.0] * 64,
}


def probe_networks(dim_z=64):
    inputs = gan.training_like(D)(np.random.default_rng(0))
    inputs["dim_z"] = dim_z
    return gan_probes._networks(inputs, torch.device("cpu"))


def _raised(fn):
    try:
        fn()
    except Exception as exc:  # noqa: BLE001
        return type(exc)
    return None


@pytest.mark.parametrize("kind", sorted(BAD_IMAGES))
def test_the_probe_discriminator_refuses_what_the_course_discriminator_refuses(kind):
    _, d = probe_networks()
    course = gt.Discriminator()
    expected = _raised(lambda: course(BAD_IMAGES[kind]()))
    assert expected is not None
    assert _raised(lambda: d(BAD_IMAGES[kind]())) is expected


@pytest.mark.parametrize("kind", sorted(BAD_Z))
def test_the_probe_generator_refuses_what_the_course_generator_refuses(kind):
    g, _ = probe_networks()
    course = gt.Generator(64).train()
    expected = _raised(lambda: course(BAD_Z[kind]()))
    assert expected is not None
    assert _raised(lambda: g(BAD_Z[kind]())) is expected


def test_the_probe_networks_accept_what_training_gives_them():
    g, d = probe_networks()
    x = g(torch.randn(6, 64))
    assert x.shape == (6, 1, 28, 28) and x.dtype == torch.float32
    assert d(x.contiguous(memory_format=torch.channels_last)).shape == (6,)


def test_flattening_images_before_d_fails(solution_ns):
    code = ("def loss_nonsaturating_d(g, d, x_real, *, device):\n" + Z +
            "    return (F.softplus(-d(x_real.flatten(1))).mean()\n"
            "            + F.softplus(d(g(z).detach().flatten(1))).mean())")
    results = grade(with_code(solution_ns, code), D)
    assert failed(results) == set(results)
    assert "4D (batched) input to conv2d" in results["value"][1]


# ------------------------------------------------------------------ 3. extreme logits tell mistakes apart
def test_swapped_labels_fail_the_extreme_check(solution_ns):
    code = ("def loss_nonsaturating_d(g, d, x_real, *, device):\n" + Z +
            "    return F.softplus(d(x_real)).mean() + F.softplus(-d(g(z).detach())).mean()")
    ok, message = grade(with_code(solution_ns, code), D)[EXTREME]
    assert not ok and "labels are swapped" in message


def test_a_sign_flipped_minimax_loss_fails_the_extreme_check(solution_ns):
    code = "def loss_minimax_g(g, d, x_real, *, device):\n" + Z + "    return F.softplus(d(g(z))).mean()"
    results = grade(with_code(solution_ns, code), MM)
    assert not results[EXTREME][0] and "wrong sign" in results[EXTREME][1]
    assert failed(results) == {"value", EXTREME, "gradient reaches the generator",
                               "value and gradient on another batch size"}


# ------------------------------------------------------------------ 4. gradients at extreme logits
TORCH_WHERE = ("    l = d(g(z))\n"
               "    return torch.where(l > 0, torch.log1p(torch.exp(-l)), -l + torch.log1p(torch.exp(l))).mean()")


def test_nan_gradients_at_extreme_logits_fail_the_extreme_check(solution_ns):
    code = "def loss_nonsaturating_g(g, d, x_real, *, device):\n" + Z + TORCH_WHERE
    only(grade(with_code(solution_ns, code), NS), [EXTREME], "torch.where")


def test_nan_gradients_of_the_discriminator_fail_the_extreme_check(solution_ns):
    code = ("def _sp(t):\n"
            "    return torch.where(t > 0, t + torch.log1p(torch.exp(-t)), torch.log1p(torch.exp(t)))\n"
            "def loss_nonsaturating_d(g, d, x_real, *, device):\n" + Z +
            "    return _sp(-d(x_real)).mean() + _sp(d(g(z).detach())).mean()")
    only(grade(with_code(solution_ns, code), D), [EXTREME], "NaN")


# ------------------------------------------------------------------ 5. freezing a network
@pytest.mark.parametrize("restore", [True, False])
def test_freezing_d_in_the_generator_loss_keeps_every_point(solution_ns, restore):
    """train_gan itself freezes d during the generator's step; a loss may do it too."""
    code = ("def loss_nonsaturating_g(g, d, x_real, *, device):\n"
            "    d.requires_grad_(False)\n" + Z +
            "    loss = F.softplus(-d(g(z))).mean()\n"
            + ("    d.requires_grad_(True)\n" if restore else "") +
            "    return loss")
    assert failed(grade(with_code(solution_ns, code), NS)) == set()


def test_freezing_g_in_the_discriminator_loss_keeps_every_point(solution_ns):
    code = ("def loss_nonsaturating_d(g, d, x_real, *, device):\n"
            "    for p in g.parameters():\n        p.requires_grad = False\n" + Z +
            "    return F.softplus(-d(x_real)).mean() + F.softplus(d(g(z))).mean()")
    assert failed(grade(with_code(solution_ns, code), D)) == set()


def test_freezing_the_network_a_loss_trains_is_named(solution_ns):
    code = ("def loss_nonsaturating_g(g, d, x_real, *, device):\n"
            "    g.requires_grad_(False)\n" + Z + "    return F.softplus(-d(g(z))).mean()")
    ok, message = grade(with_code(solution_ns, code), NS)["gradient reaches the generator"]
    assert not ok and "g.requires_grad_(False)" in message


def test_a_loss_that_calls_backward_itself_is_told_so(solution_ns):
    code = ("def loss_nonsaturating_g(g, d, x_real, *, device):\n" + Z +
            "    loss = F.softplus(-d(g(z))).mean()\n    loss.backward()\n    return loss")
    ok, message = grade(with_code(solution_ns, code), NS)["gradient reaches the generator"]
    assert not ok and ".backward()" in message


def test_the_students_exceptions_are_reported_by_the_probe_not_raised(solution_ns):
    """Whatever escapes the probe is an internal error: the student's exceptions come back
    as data (ProbeError and NotImplementedError still propagate, for call_probe)."""
    inputs = gan.training_like(NS)(np.random.default_rng(0))
    ns = with_code(solution_ns, "def loss_nonsaturating_g(g, d, x_real, *, device):\n    return 1 / 0")
    out = gan_probes.gan_loss_call(ns, inputs)
    assert "ZeroDivisionError" in out["calls"][0]["error"]
    ns = with_code(solution_ns, "def loss_nonsaturating_g(g, d, x_real, *, device):\n"
                                "    raise NotImplementedError()")
    with pytest.raises(NotImplementedError):
        gan_probes.gan_loss_call(ns, inputs)
    ns = with_code(solution_ns, "def loss_nonsaturating_g(g, d, x_real, *, device):\n    return 0.5")
    with pytest.raises(ProbeError):
        gan_probes.gan_loss_call(ns, inputs)


# ------------------------------------------------------------------ 6. one format slip
def test_a_loss_of_shape_1_fails_only_the_scalar_check(solution_ns):
    code = ("def loss_nonsaturating_d(g, d, x_real, *, device):\n"
            "    loss = torch.zeros(1, device=device)\n" + Z +
            "    loss = loss + F.softplus(-d(x_real)).mean() + F.softplus(d(g(z).detach())).mean()\n"
            "    return loss")
    only(grade(with_code(solution_ns, code), D), ["returns a scalar"], "torch.zeros(1)")


# ------------------------------------------------------------------ 7. the grader is hard to detect
def test_the_probe_networks_carry_the_course_networks_names():
    g, d = probe_networks()
    assert (type(g).__name__, type(d).__name__) == ("Generator", "Discriminator")
    assert (type(g).__qualname__, type(d).__qualname__) == ("Generator", "Discriminator")


@pytest.mark.parametrize("target", [D, NS, MM])
def test_each_loss_has_checks_that_call_it_exactly_as_training_does(target):
    for check in (c for c in gan.PUBLIC if c.target == target and c.title in ("value", Z_NORMAL)):
        inputs = check.inputs(np.random.default_rng(0))
        assert inputs["real"].shape == (100, 1, 28, 28) and inputs["real"].dtype == np.float32
        assert inputs["fake"].shape == (100, 1, 28, 28) and int(inputs["dim_z"]) == 64


def _kind(inputs):
    b, dim_z = len(inputs["real"]), int(inputs["dim_z"])
    return "training" if (b, dim_z) == (100, 64) else "other" if 24 <= b <= 63 and dim_z != 64 else "?"


@pytest.mark.parametrize("target", [D, NS, MM])
def test_hidden_checks_run_the_public_probe_on_inputs_of_a_public_kind(target):
    public = [c for c in gan.PUBLIC if c.target == target]
    for seed in range(5):
        kinds = {_kind(c.inputs(np.random.default_rng(seed))) for c in public}
        for c in (c for c in hidden.HIDDEN if c.target == target):
            inputs = c.inputs(np.random.default_rng(seed))
            assert c.probe is public[0].probe
            assert _kind(inputs) in kinds and "?" not in kinds
            assert set(inputs) == set(public[0].inputs(np.random.default_rng(seed)))


@pytest.mark.parametrize("target", [D, NS, MM])
def test_every_image_a_check_shows_lies_in_0_1_as_real_data_does(target):
    for c in [*gan.PUBLIC, *hidden.HIDDEN]:
        if c.target == target:
            inputs = c.inputs(np.random.default_rng(1))
            for key in ("real", "fake"):
                assert 0.0 <= inputs[key].min() and inputs[key].max() <= 1.0, (c.title, key)


def test_the_frame_that_calls_the_loss_names_no_grader_module(solution_ns):
    code = ("import sys\n"
            "SEEN = []\n"
            "def loss_nonsaturating_g(g, d, x_real, *, device):\n"
            "    f = sys._getframe(1)\n"
            "    SEEN.append((f.f_globals.get('__name__'), f.f_code.co_filename, f.f_code.co_name))\n" + Z +
            "    return F.softplus(-d(g(z))).mean()")
    ns = with_code(solution_ns, code)
    grade(ns, NS)
    assert ns["SEEN"] and all("gan_probes" not in " ".join(s) and "hw10" not in " ".join(s) for s in ns["SEEN"])


# ------------------------------------------------------------------ 9. charged once, with the right hint
LOG_SIGMOID_FORMS = {
    "log_of_sigmoid": ("    p, q = torch.sigmoid(d(x_real)), torch.sigmoid(d(g(z).detach()))\n"
                       "    return -torch.log(p).mean() - torch.log(1 - q).mean()", "log(0) = -inf"),
    "clamped": ("    p, q = torch.sigmoid(d(x_real)), torch.sigmoid(d(g(z).detach()))\n"
                "    return -torch.log(p + 1e-8).mean() - torch.log(1 - q + 1e-8).mean()", "-log(1e-08)"),
    "clamp_1e-7": ("    p = torch.clamp(torch.sigmoid(d(x_real)), 1e-7, 1 - 1e-7)\n"
                   "    q = torch.clamp(torch.sigmoid(d(g(z).detach())), 1e-7, 1 - 1e-7)\n"
                   "    return -torch.log(p).mean() - torch.log(1 - q).mean()", "torch.clamp(torch.sigmoid(l), 1e-07"),
    "bce_on_sigmoid": ("    p, q = torch.sigmoid(d(x_real)), torch.sigmoid(d(g(z).detach()))\n"
                       "    return (F.binary_cross_entropy(p, torch.ones_like(p))\n"
                       "            + F.binary_cross_entropy(q, torch.zeros_like(q)))", "F.binary_cross_entropy on"),
}


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 2024])
@pytest.mark.parametrize("form", sorted(LOG_SIGMOID_FORMS))
def test_log_of_sigmoid_forms_are_charged_once_by_the_extreme_check_which_names_them(solution_ns, form, seed):
    body, phrase = LOG_SIGMOID_FORMS[form]
    code = "def loss_nonsaturating_d(g, d, x_real, *, device):\n" + Z + body
    only(grade(with_code(solution_ns, code), D, seed), [EXTREME], phrase)


HINTS = {
    "ns_bce_with_target_zero": (NS, "    l = d(g(z))\n    return F.binary_cross_entropy_with_logits(l, torch.zeros_like(l))",
                                "value", "its target is 1"),
    "mm_minus_bce_with_target_one": (MM, "    l = d(g(z))\n"
                                         "    return -F.binary_cross_entropy_with_logits(l, torch.ones_like(l))",
                                     "value", "-F.binary_cross_entropy_with_logits(l, torch.zeros_like(l))"),
    "d_fake_term_sign_with_logsigmoid": (D, "    return -F.logsigmoid(d(x_real)).mean() + F.logsigmoid(-d(g(z).detach())).mean()",
                                         EXTREME, "the fake-data term has the wrong sign"),
    "d_real_term_sign_with_logsigmoid": (D, "    return F.logsigmoid(d(x_real)).mean() - F.logsigmoid(-d(g(z).detach())).mean()",
                                         "value", "the real-data term has the wrong sign"),
    "d_fakes_scored_as_real": (D, "    return -F.logsigmoid(d(x_real)).mean() - F.logsigmoid(d(g(z).detach())).mean()",
                               "value", "the fakes are scored as real"),
    "ns_on_real_images_value": (NS, "    return F.softplus(-d(x_real)).mean()", "value", "computed on the real images"),
    "ns_on_real_images_gradient": (NS, "    return F.softplus(-d(x_real)).mean()", "gradient reaches the generator",
                                   "g is never called"),
    "ns_generator_output_detached": (NS, "    return F.softplus(-d(g(z).detach())).mean()",
                                     "gradient reaches the generator", "is cut"),
}


@pytest.mark.parametrize("name", sorted(HINTS))
def test_each_hint_is_triggered_by_the_mistake_it_names(solution_ns, name):
    target, body, title, phrase = HINTS[name]
    assert title in public_titles(target)
    code = f"def {target}(g, d, x_real, *, device):\n" + Z + body
    ok, message = grade(with_code(solution_ns, code), target)[title]
    assert not ok and phrase in message, message


def test_a_loss_on_real_images_is_not_told_to_remove_a_detach(solution_ns):
    code = "def loss_nonsaturating_g(g, d, x_real, *, device):\n" + Z + "    return F.softplus(-d(x_real)).mean()"
    message = grade(with_code(solution_ns, code), NS)["gradient reaches the generator"][1]
    assert "detach" not in message


def test_a_mistake_no_hint_names_gets_no_hint(solution_ns):
    """Fake term weighted twice: in no table, so no hint, at moderate or extreme logits."""
    code = ("def loss_nonsaturating_d(g, d, x_real, *, device):\n" + Z +
            "    return F.softplus(-d(x_real)).mean() + 2 * F.softplus(d(g(z).detach())).mean()")
    results = grade(with_code(solution_ns, code), D)
    for title in ("value", EXTREME):
        ok, message = results[title]
        assert not ok and message.rstrip().endswith("(1 - D(G(z)))"), message
        assert "sigmoid" not in message and "swapped" not in message


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
