"""GAN training (hw10kit.gan_training) and ``experiment.py --model gan``, run with the
master notebook's solution losses on the CPU."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from hw10kit import data as hw10data
from hw10kit import gan_training as gt
from hw10kit.notebook import load_definitions
from student_folder import ROOT, make_release_folder, run_experiment

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def ns():
    return load_definitions(str(ROOT / "source" / "hw10" / "hw10_gan.ipynb"))


@pytest.fixture(scope="module")
def images():
    train, _ = hw10data.load("train", root=hw10data.find_root(ROOT))
    return train[:1000].clone()


def _train(ns, images, **kw):
    torch.manual_seed(0)
    g, d = gt.Generator(64), gt.Discriminator()
    kw = dict(dict(iter_max=6, seed=0, device=CPU, progress=False, threads=1), **kw)  # threads: bit-identical runs
    history = gt.train_gan(g, d, images, ns["loss_nonsaturating_d"], ns["loss_nonsaturating_g"], **kw)
    return g, d, history


def _weights(g):
    return [p.detach().clone() for p in g.parameters()]


def test_the_networks_have_the_course_shapes_and_sizes():
    g, d = gt.Generator(64), gt.Discriminator()
    x = g(torch.randn(5, 64))
    assert x.shape == (5, 1, 28, 28) and d(x).shape == (5,)
    # Linear(64,512)+BN, Linear(512,3136)+BN, Conv(16->32,3x3)+BN, Conv(8->1,3x3)
    assert sum(p.numel() for p in g.parameters()) == (64 * 512 + 512 + 2 * 512 + 512 * 3136 + 3136
                                                      + 2 * 3136 + 16 * 32 * 9 + 32 + 2 * 32 + 8 * 9 + 1)
    # Conv(1->32,4x4), Conv(32->64,4x4), Linear(3136,512), Linear(512,1)
    assert sum(p.numel() for p in d.parameters()) == (16 * 32 + 32 + 32 * 64 * 16 + 64
                                                      + 3136 * 512 + 512 + 512 + 1)


def test_training_returns_one_finite_loss_pair_per_iteration(ns, images):
    _, _, history = _train(ns, images, iter_max=8)
    assert history["iteration"] == list(range(1, 9))
    assert len(history["loss_d"]) == len(history["loss_g"]) == 8
    assert all(map(torch.isfinite, torch.tensor(history["loss_d"] + history["loss_g"])))


def _train_from(init_seed, ns, images, *, seed, disturb):
    torch.manual_seed(init_seed)
    g, d = gt.Generator(64), gt.Discriminator()
    torch.manual_seed(disturb)  # the global state train_gan finds; seed= must override it
    return gt.train_gan(g, d, images, ns["loss_nonsaturating_d"], ns["loss_nonsaturating_g"],
                        iter_max=4, seed=seed, device=CPU, progress=False, threads=1)


def test_training_is_reproducible_for_a_given_seed_whatever_the_global_random_state(ns, images):
    h1 = _train_from(0, ns, images, seed=5, disturb=1)
    h2 = _train_from(0, ns, images, seed=5, disturb=2)
    assert h1["loss_d"] == h2["loss_d"] and h1["loss_g"] == h2["loss_g"]


def test_training_with_another_seed_draws_other_batches_and_noise(ns, images):
    h1 = _train_from(0, ns, images, seed=5, disturb=1)
    h2 = _train_from(0, ns, images, seed=6, disturb=1)
    assert h1["loss_d"] != h2["loss_d"]


def test_each_iteration_takes_a_discriminator_step_then_a_generator_step_on_the_updated_d(images):
    calls = []

    def loss_d(g, d, x, *, device):
        calls.append(("d", d.net[-1].bias.item()))
        z = torch.randn(x.shape[0], g.dim_z, device=device)
        return F.softplus(-d(x)).mean() + F.softplus(d(g(z).detach())).mean()

    def loss_g(g, d, x, *, device):
        calls.append(("g", d.net[-1].bias.item()))
        return F.softplus(-d(g(torch.randn(x.shape[0], g.dim_z, device=device)))).mean()

    torch.manual_seed(0)
    gt.train_gan(gt.Generator(64), gt.Discriminator(), images, loss_d, loss_g, iter_max=2, seed=0,
                 device=CPU, progress=False)
    assert [kind for kind, _ in calls] == ["d", "g", "d", "g"]
    assert calls[1][1] != calls[0][1], "the generator's loss must see the discriminator after its step"


def test_the_discriminator_step_leaves_the_generator_unchanged(ns, images):
    torch.manual_seed(0)
    g, d = gt.Generator(64), gt.Discriminator()
    before = _weights(g)
    seen = []

    def loss_g(g, d, x, *, device):  # called right after the first discriminator step
        if not seen:
            seen.append(_weights(g))
        return ns["loss_nonsaturating_g"](g, d, x, device=device)

    gt.train_gan(g, d, images, ns["loss_nonsaturating_d"], loss_g, iter_max=2, seed=0, device=CPU,
                 progress=False)
    for a, b in zip(before, seen[0]):
        assert torch.equal(a, b)
    assert any(not torch.equal(a, b) for a, b in zip(before, g.parameters())), "the generator step must move g"


def test_each_step_records_gradients_of_the_stepping_network_only(ns, images):
    seen = []

    def loss_d(g, d, x, *, device):
        seen.append(("d", all(p.requires_grad for p in d.parameters()),
                     any(p.requires_grad for p in g.parameters())))
        return ns["loss_nonsaturating_d"](g, d, x, device=device)

    def loss_g(g, d, x, *, device):
        seen.append(("g", all(p.requires_grad for p in g.parameters()),
                     any(p.requires_grad for p in d.parameters())))
        return ns["loss_nonsaturating_g"](g, d, x, device=device)

    torch.manual_seed(0)
    g, d = gt.Generator(64), gt.Discriminator()
    gt.train_gan(g, d, images, loss_d, loss_g, iter_max=2, seed=0, device=CPU, progress=False)
    assert seen == [("d", True, False), ("g", True, False)] * 2
    assert all(p.requires_grad for p in list(g.parameters()) + list(d.parameters())), \
        "training must hand back both networks trainable"


def test_the_generator_step_reaches_every_generator_parameter_through_the_frozen_discriminator(ns, images):
    torch.manual_seed(0)
    g, d = gt.Generator(64), gt.Discriminator()
    before_g_step = []

    def loss_g(g, d, x, *, device):
        before_g_step[:] = _weights(g)
        return ns["loss_nonsaturating_g"](g, d, x, device=device)

    gt.train_gan(g, d, images, ns["loss_nonsaturating_d"], loss_g, iter_max=1, seed=0, device=CPU,
                 progress=False)
    assert all(not torch.equal(a, b) for a, b in zip(before_g_step, g.parameters()))


def test_the_learning_rate_decays_linearly_to_zero_over_the_run_by_default(ns, images):
    _, _, history = _train(ns, images, iter_max=4, lr_g=1e-3)
    assert history["lr_g"] == pytest.approx([1e-3, 7.5e-4, 5e-4, 2.5e-4])


def test_without_decay_the_learning_rate_stays_constant(ns, images):
    _, _, history = _train(ns, images, iter_max=3, lr_g=2e-4, lr_decay=False)
    assert history["lr_g"] == pytest.approx([2e-4] * 3)


def _optimizers_made(ns, images, monkeypatch):
    made = []
    real = gt.make_adam
    monkeypatch.setattr(gt, "make_adam", lambda *a, **kw: made.append(real(*a, **kw)) or made[-1])
    _train(ns, images, iter_max=1)
    return made  # the discriminator's, then the generator's


def test_both_optimizers_use_beta1_one_half_by_default(ns, images, monkeypatch):
    made = _optimizers_made(ns, images, monkeypatch)
    assert [opt.param_groups[0]["betas"] for opt in made] == [(0.5, 0.999)] * 2


def test_the_generator_learns_five_times_faster_than_the_discriminator_by_default(ns, images, monkeypatch):
    opt_d, opt_g = _optimizers_made(ns, images, monkeypatch)
    assert (opt_d.defaults["lr"], opt_g.defaults["lr"]) == (2e-4, 1e-3)


def test_the_generator_output_lies_in_the_data_range_even_for_extreme_noise():
    g = gt.Generator(64).eval()
    x = g(torch.randn(50, 64) * 100)
    assert x.shape == (50, 1, 28, 28) and bool(((x >= 0) & (x <= 1)).all())


def test_a_loss_that_becomes_infinite_stops_training_with_a_pointer_to_the_checks(images):
    def overflowing_d(g, d, x, *, device):
        return -torch.log(torch.sigmoid(d(x) * 0 - 1e4)).mean()

    def overflowing_g(g, d, x, *, device):
        return -torch.log(torch.sigmoid(d(g(torch.randn(x.shape[0], g.dim_z))) * 0 - 1e4)).mean()

    with pytest.raises(FloatingPointError, match="check cells"):
        gt.train_gan(gt.Generator(64), gt.Discriminator(), images, overflowing_d, overflowing_g,
                     iter_max=2, device=CPU, progress=False)


def test_a_diverging_gan_stops_within_log_every_steps_not_after_training(ns, images):
    calls = []

    def nan_d(g, d, x, *, device):
        calls.append(1)
        return ns["loss_nonsaturating_d"](g, d, x, device=device) * float("nan")

    with pytest.raises(FloatingPointError, match="loss_d became nan by iteration 5. Run the check cells"):
        gt.train_gan(gt.Generator(64), gt.Discriminator(), images, nan_d, ns["loss_nonsaturating_g"],
                     iter_max=1000, log_every=5, device=CPU, progress=False)
    assert len(calls) == 5


def test_a_generator_loss_that_does_not_reach_the_generator_stops_training_with_a_pointer(ns, images):
    def real_only(g, d, x, *, device):
        return F.softplus(-d(x)).mean()

    with pytest.raises(ValueError, match="generator's loss has no gradient with respect to g"):
        gt.train_gan(gt.Generator(64), gt.Discriminator(), images, ns["loss_nonsaturating_d"], real_only,
                     iter_max=2, device=CPU, progress=False)


def test_the_save_hook_runs_every_save_interval_and_at_the_end(ns, images):
    saved = []
    _train(ns, images, iter_max=5, save_every=2, save_fn=lambda g, d, i: saved.append(i))
    assert saved == [2, 4, 5]


def test_the_generator_handed_back_is_the_moving_average_of_its_weights_after_each_step(ns, images):
    steps = []
    g_last, _, _ = _train(ns, images, iter_max=13, ema=None, save_every=1,
                          save_fn=lambda g, d, i: steps.append(_weights(g)))
    steps[-1] = _weights(g_last)  # without averaging, the last save is the last step's weights
    g_avg, _, history = _train(ns, images, iter_max=13, ema=0.6)  # 13 steps: 0.6 is below the cap
    expected = steps[0]
    for w in steps[1:]:
        expected = [0.6 * e + 0.4 * x for e, x in zip(expected, w)]
    assert history["ema"] == 0.6
    for got, want in zip(g_avg.parameters(), expected):
        torch.testing.assert_close(got.detach(), want, rtol=1e-5, atol=1e-6)


def test_the_averaged_generator_has_batchnorm_statistics_of_its_own_weights(ns, images):
    g, _, _ = _train(ns, images, iter_max=5)
    with torch.no_grad():
        pre_bn = g.fc[0](torch.randn(20000, 64, generator=torch.Generator().manual_seed(1)))
    torch.testing.assert_close(g.fc[1].running_mean, pre_bn.mean(0), atol=0.02, rtol=0.02)
    torch.testing.assert_close(g.fc[1].running_var, pre_bn.var(0), atol=0.02, rtol=0.05)


@pytest.mark.parametrize("iter_max", [2, 10, 1000, 10000, 100000])
def test_the_first_steps_weights_keep_at_most_e_to_the_minus_5_of_the_average_in_any_run(iter_max):
    # the average starts from the weights after step 1 and is updated iter_max - 1 times
    assert gt.average_decay(gt.EMA_DECAY, iter_max) ** (iter_max - 1) <= math.exp(-5) + 1e-12


def test_training_refuses_a_run_without_iterations(ns, images):
    with pytest.raises(ValueError, match="iter_max"):
        _train(ns, images, iter_max=0)


def test_a_10000_step_run_averages_with_the_full_decay():
    assert gt.average_decay(gt.EMA_DECAY, 10000) == gt.EMA_DECAY


def test_a_short_run_reports_the_capped_decay_it_used(ns, images):
    assert _train(ns, images, iter_max=6)[2]["ema"] == gt.average_decay(gt.EMA_DECAY, 6)


def test_averaging_leaves_the_global_random_state_as_it_would_be_without_it(ns, images):
    _train(ns, images, iter_max=3, ema=None)
    without = torch.get_rng_state()
    _train(ns, images, iter_max=3)
    assert torch.equal(torch.get_rng_state(), without)


@pytest.mark.parametrize("precision, expected", [("fp32", None), ("bf16", torch.bfloat16)])
def test_autocast_dtype_follows_an_explicit_precision(precision, expected):
    assert gt.autocast_dtype("cpu", precision) is expected


def test_the_cpu_bf16_probes_exist_in_this_torch():
    # were one renamed, "auto" would quietly train in float32 on every CPU
    assert all(callable(getattr(torch.cpu, name, None)) for name in gt.CPU_BF16_PROBES)


def test_auto_keeps_float32_on_a_gpu_where_bf16_was_not_measured():
    assert gt.autocast_dtype("cuda", "auto") is None


@pytest.mark.parametrize("native", [True, False])
def test_auto_picks_bf16_exactly_where_the_cpu_has_native_bf16(monkeypatch, native):
    for probe in gt.CPU_BF16_PROBES:
        monkeypatch.setattr(torch.cpu, probe, lambda: native)
    assert gt.autocast_dtype("cpu", "auto") is (torch.bfloat16 if native else None)


def test_bf16_on_a_device_without_autocast_support_warns_and_trains_in_float32():
    with pytest.warns(UserWarning, match="float32"):
        assert gt.autocast_dtype("mps", "bf16") is None


def test_autocast_dtype_rejects_an_unknown_precision():
    with pytest.raises(ValueError, match="precision"):
        gt.autocast_dtype("cpu", "fp16")


def test_under_bf16_autocast_the_networks_hand_the_losses_float32():
    g, d = gt.Generator(64), gt.Discriminator()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        x = g(torch.randn(4, 64))
        logits = d(x)
    assert x.dtype == logits.dtype == torch.float32


@pytest.mark.parametrize("native", [True, False])
def test_training_defaults_to_bf16_exactly_where_the_cpu_computes_it_natively(monkeypatch, ns, images, native):
    for probe in gt.CPU_BF16_PROBES:
        monkeypatch.setattr(torch.cpu, probe, lambda: native)
    assert _train(ns, images, iter_max=1)[2]["precision"] == ("bf16" if native else "fp32")


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_losses_run_under_autocast_exactly_in_bf16_and_the_weights_stay_float32(ns, images, precision):
    autocast = []

    def loss_d(g, d, x, *, device):
        autocast.append(torch.is_autocast_enabled("cpu"))
        return ns["loss_nonsaturating_d"](g, d, x, device=device)

    torch.manual_seed(0)
    g, d = gt.Generator(64), gt.Discriminator()
    history = gt.train_gan(g, d, images, loss_d, ns["loss_nonsaturating_g"], iter_max=2, seed=0,
                           device=CPU, progress=False, precision=precision)
    assert history["precision"] == precision
    assert autocast == [precision == "bf16"] * 2
    assert all(p.dtype == torch.float32 for p in [*g.parameters(), *d.parameters()])


def test_training_keeps_convolution_weights_channels_last(ns, images):
    g, d, _ = _train(ns, images, iter_max=1)
    assert d.net[2].weight.is_contiguous(memory_format=torch.channels_last)
    assert g.conv[1].weight.is_contiguous(memory_format=torch.channels_last)


def test_samples_are_deterministic_for_a_seed_and_lie_in_the_unit_interval():
    g = gt.Generator(64)
    a, b = gt.samples(g, 16, seed=3), gt.samples(g, 16, seed=3)
    assert a.shape == (16, 1, 28, 28) and torch.equal(a, b)
    assert a.min() >= 0 and a.max() <= 1
    assert g.training, "sampling must restore the training mode"


def test_the_sample_grid_is_10_by_20_images_with_a_2_pixel_border(tmp_path):
    grid = gt.save_sample_grid(gt.Generator(64), tmp_path / "s.png", rows=10, cols=20)
    assert grid.shape == (10 * 30 + 2, 20 * 30 + 2)
    assert (tmp_path / "s.png").stat().st_size > 0


def test_experiment_cli_trains_the_notebook_gan_and_reports_sample_quality(tmp_path):
    folder = make_release_folder(tmp_path)
    proc = run_experiment(folder, "--model", "gan", "--iter_max", "6", "--iter_save", "3",
                          "--device", "cpu", "--no_progress")
    assert proc.returncode == 0, proc.stderr
    assert "Classifier Inception Score of 10000 samples:" in proc.stdout
    assert "Frechet distance to the test digits" in proc.stdout
    assert "A correct GAN reaches a classifier Inception Score of about 8.7" in proc.stdout
    run_dir = folder / "checkpoints" / "model=gan_z=64_run=0000"
    for name in ("samples.png", "loss.png", "model-00003.pt", "model-00006.pt"):
        assert (run_dir / name).is_file(), name


def test_experiment_cli_trains_with_the_minimax_loss_and_bf16_when_asked(tmp_path):
    folder = make_release_folder(tmp_path)
    proc = run_experiment(folder, "--model", "gan", "--iter_max", "2", "--loss_g", "minimax",
                          "--device", "cpu", "--no_progress", "--precision", "bf16")
    assert proc.returncode == 0, proc.stderr
    assert "minimax generator loss" in proc.stdout and "bf16" in proc.stdout


def test_experiment_cli_explains_an_unfilled_gan_notebook(tmp_path):
    folder = make_release_folder(tmp_path, filled=False)
    proc = run_experiment(folder, "--model", "gan", "--iter_max", "2", "--device", "cpu", "--no_progress")
    assert proc.returncode == 1
    assert "not implemented yet" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (folder / "checkpoints").exists() or not any((folder / "checkpoints").iterdir())
