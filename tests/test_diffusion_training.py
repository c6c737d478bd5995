"""The DDPM of Problem 4's "Beyond the seed" (hw10kit.diffusion_training) and
``experiment.py --model diffusion``: it trains on real MNIST with the student's q_sample,
samples with the student's q_posterior, and turns an unfinished function into one line.
Tiny networks (width 8) and short schedules keep every test to seconds."""
from __future__ import annotations

import importlib.util
import math

import pytest
import torch

from hw10kit import data as hw10data
from hw10kit import diffusion_training as dt
from hw10kit.notebook import load_definitions
from hw10kit.training import LossError
from hw10kit.unfinished import Unfinished
from student_folder import ROOT, SOURCE, make_release_folder, run_experiment, write_student_notebook

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def ns():
    return load_definitions(str(SOURCE / "hw10_diffusion.ipynb"))


@pytest.fixture(scope="module")
def images():
    train, _ = hw10data.load("train", root=hw10data.find_root(ROOT))
    return train[:512].clone()


@pytest.fixture(scope="module")
def experiment():
    spec = importlib.util.spec_from_file_location("experiment_for_diffusion", SOURCE / "experiment.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _train(net, images, q_sample, betas, **kw):
    kw = dict(dict(iter_max=4, batch_size=16, seed=0, device=CPU, progress=False, threads=1), **kw)
    return dt.train_ddpm(net, images, q_sample, betas, **kw)


# --------------------------------------------------------------------- schedules and network


def test_the_cosine_schedule_spans_almost_no_noise_to_pure_noise_for_any_T():
    for T in (50, 100, 1000):
        abar = torch.cumprod(1 - dt.cosine_betas(T), 0)
        assert abar[0] > 0.998 and abar[-1] < 1e-6, T
        # the same noise level at the same fraction of the chain, whatever T
        assert abs(abar[T // 2 - 1].item() - torch.cumprod(1 - dt.cosine_betas(100), 0)[49].item()) < 0.02


def test_the_linear_schedule_is_rescaled_so_that_a_short_chain_still_ends_in_noise():
    for T in (100, 200, 1000):
        abar_T = torch.prod(1 - dt.linear_betas(T)).item()
        assert abar_T < 1e-3, (T, abar_T)
    unscaled = torch.prod(1 - torch.linspace(1e-4, 0.02, 200, dtype=torch.float64)).item()
    assert unscaled > 0.1  # what the brief warns about: T = 200 without rescaling ends far from noise


def test_the_schedules_match_diffusers_reference_implementation():
    diffusers = pytest.importorskip("diffusers")  # a test-only dependency; the kit never imports it
    for T in (100, 1000):
        ref = diffusers.DDPMScheduler(num_train_timesteps=T, beta_schedule="squaredcos_cap_v2").betas
        assert torch.allclose(dt.cosine_betas(T).float(), ref.float(), atol=1e-6)
    ref = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear").betas
    assert torch.allclose(dt.linear_betas(1000).float(), ref.float(), atol=1e-7)


def test_the_unet_predicts_noise_of_the_image_shape_and_starts_at_zero():
    net = dt.UNet(width=8)
    x = torch.randn(3, 1, 28, 28)
    eps = net(x, torch.tensor([1, 50, 100]))
    assert eps.shape == x.shape and eps.dtype == torch.float32
    assert torch.count_nonzero(eps) == 0  # zero-initialised output layer
    assert sum(p.numel() for p in dt.UNet().parameters()) < 500_000
    with pytest.raises(ValueError, match="multiple of 8"):
        dt.UNet(width=12)


def test_data_go_to_minus_one_one_and_back():
    x = dt.to_model_range(torch.zeros(2, 784))
    assert x.shape == (2, 1, 28, 28) and (x == -1).all()
    assert torch.equal(dt.to_image_range(dt.to_model_range(torch.ones(1, 784))), torch.ones(1, 1, 28, 28))


# --------------------------------------------------------------------- training


def test_a_few_steps_on_real_mnist_give_a_finite_falling_loss(ns, images):
    torch.manual_seed(0)
    net = dt.UNet(width=8)
    history = _train(net, images, ns["q_sample"], dt.make_betas(20), iter_max=40, warmup=5)
    loss = history["loss"]
    assert len(loss) == 40 and all(map(math.isfinite, loss))
    assert sum(loss[-10:]) / 10 < sum(loss[:10]) / 10, loss
    assert history["timesteps"] == 20 and history["losses"] == dt.LOSSES
    assert history["precision"] == "fp32"  # "auto" stays float32 for this model


def test_training_draws_x_t_with_the_students_q_sample(ns, images):
    calls = []

    def spy(x0, t, betas, noise):
        calls.append((x0.shape, t.clone(), betas.shape, noise.shape))
        return ns["q_sample"](x0, t, betas, noise)

    _train(dt.UNet(width=8), images, spy, dt.make_betas(10), iter_max=3)
    assert len(calls) == 3
    for x0_shape, t, betas_shape, noise_shape in calls:
        assert x0_shape == noise_shape == (16, 1, 28, 28) and betas_shape == (10,)
        assert t.dtype == torch.long and 1 <= t.min() and t.max() <= 10  # 1-based


def test_training_sees_data_in_minus_one_one(ns, images):
    seen = []

    def spy(x0, t, betas, noise):
        seen.append((x0.min().item(), x0.max().item()))
        return ns["q_sample"](x0, t, betas, noise)

    _train(dt.UNet(width=8), images, spy, dt.make_betas(10), iter_max=2)
    assert all(lo == -1.0 and hi == 1.0 for lo, hi in seen)


def test_a_q_sample_of_the_wrong_shape_stops_training_with_a_pointer_to_its_check(images):
    with pytest.raises(LossError, match="q_sample returned .*check cell of q_sample"):
        _train(dt.UNet(width=8), images, lambda x0, t, b, n: x0.flatten(1), dt.make_betas(10), iter_max=2)


# --------------------------------------------------------------------- sampling


def test_the_sampler_steps_T_to_1_with_the_students_q_posterior_on_x0_hat(ns):
    T, calls = 6, []
    betas = dt.make_betas(T)
    abar = torch.cumprod(1 - betas.double(), 0).float()

    def spy(x0, xt, t, b):
        calls.append((x0.clone(), xt.clone(), t.clone()))
        return ns["q_posterior"](x0, xt, t, b)

    net = dt.UNet(width=8)  # predicts eps = 0, so x0_hat = clip(x_t / sqrt(abar_t))
    x, kept = dt.reverse_chain(net, spy, betas, 5, seed=1, record={T, 0})
    assert [int(t[0]) for _, _, t in calls] == list(range(T, 0, -1))
    for x0_hat, xt, t in calls:
        assert t.shape == (5,) and (t == t[0]).all()
        assert torch.allclose(x0_hat, (xt / abar[int(t[0]) - 1].sqrt()).clamp(-1, 1), atol=1e-6)
    # the last step (t = 1) adds no noise: x_0 is q_posterior's mean, which is x0_hat there
    assert torch.allclose(x, calls[-1][0], atol=1e-5)
    assert torch.equal(kept[T], calls[0][1]) and torch.equal(kept[0], x)


def test_samples_are_images_in_zero_one_and_reproducible(ns):
    net = dt.UNet(width=8)
    a = dt.samples(net, ns["q_posterior"], dt.make_betas(4), n=7, seed=3, batch_size=4)
    b = dt.samples(net, ns["q_posterior"], dt.make_betas(4), n=7, seed=3, batch_size=4)
    assert a.shape == (7, 1, 28, 28) and a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, b)


def test_a_q_posterior_returning_one_tensor_says_what_to_fix():
    with pytest.raises(LossError, match=r"q_posterior must return \(mean, var\)"):
        dt.reverse_chain(dt.UNet(width=8), lambda x0, xt, t, b: x0, dt.make_betas(3), 2)


def test_forward_and_reverse_process_rows(ns, images):
    betas = dt.make_betas(20)
    steps, rows = dt.forward_process(images[:3], ns["q_sample"], betas)
    assert steps[0] == 0 and steps[-1] == 20 and rows.shape == (len(steps), 3, 1, 28, 28)
    assert torch.allclose(rows[0], images[:3].reshape(-1, 1, 28, 28), atol=1e-6)  # t = 0 is the data
    steps, rows = dt.reverse_process(dt.UNet(width=8), ns["q_posterior"], betas, n=2)
    assert steps[0] == 20 and steps[-1] == 0 and rows.shape == (len(steps), 2, 1, 28, 28)


# --------------------------------------------------------------------- unfinished


def _unfinished(*args):
    raise NotImplementedError()


def q_sample(x0, t, betas, noise):  # noqa: D103 - named as the student's function
    raise NotImplementedError()


def q_posterior(x0, xt, t, betas):  # noqa: D103
    raise NotImplementedError()


def test_a_not_implemented_function_becomes_one_unfinished_line(images):
    betas = dt.make_betas(5)
    cases = [
        (lambda: _train(dt.UNet(width=8), images, q_sample, betas), "Training", "q_sample"),
        (lambda: dt.samples(dt.UNet(width=8), q_posterior, betas, n=2), "Sampling", "q_posterior"),
        (lambda: dt.forward_process(images[:2], q_sample, betas), "The forward process", "q_sample"),
        (lambda: dt.reverse_process(dt.UNet(width=8), q_posterior, betas, n=2), "The reverse process",
         "q_posterior"),
    ]
    for call, what, name in cases:
        with pytest.raises(Unfinished) as caught:
            call()
        assert caught.value.name == name and caught.value.what == what
        lines = caught.value._render_traceback_()
        assert len(lines) == 1 and f"`{name}` is not implemented yet" in lines[0]


# --------------------------------------------------------------------- experiment.py


def test_experiment_rejects_another_models_option(experiment, capsys):
    for argv, flag, owner in ((["--model", "diffusion", "--loss_g", "minimax"], "--loss_g", "gan"),
                              (["--model", "diffusion", "--recipe", "tuned"], "--recipe", "vae"),
                              (["--model", "vae", "--timesteps", "50"], "--timesteps", "diffusion")):
        with pytest.raises(SystemExit) as exit_:
            experiment.parse_args(argv)
        assert exit_.value.code == 2
        line = capsys.readouterr().err.strip().splitlines()[-1]
        assert line == f"experiment.py: error: {flag} is an option of --model {owner}, not of --model {argv[1]}"


def test_experiment_takes_the_diffusion_options(experiment):
    args, problem, exp = experiment.parse_args(["--model", "diffusion", "--timesteps", "50", "--schedule",
                                                "linear", "--width", "16", "--batch_size", "32"])
    assert problem.key == "diffusion" and exp is dt.EXPERIMENT
    assert (args.timesteps, args.schedule, args.width, args.batch_size) == (50, "linear", 16, 32)


def test_help_lists_every_model_without_a_conflict(experiment, capsys):
    with pytest.raises(SystemExit) as exit_:
        experiment.parse_args(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "--model diffusion (hw10_diffusion.ipynb)" in out and "--timesteps" in out


def test_experiment_on_a_blank_notebook_says_in_one_line_what_to_fill_in(experiment, tmp_path, capsys):
    blank = write_student_notebook(SOURCE / "hw10_diffusion.ipynb", tmp_path / "hw10_diffusion.ipynb",
                                   filled=False)
    with pytest.raises(SystemExit) as exit_:
        experiment.main(["--model", "diffusion", "--notebook", str(blank), "--iter_max", "2", "--width", "8",
                         "--timesteps", "3", "--num_scored", "0", "--device", "cpu", "--no_progress",
                         "--threads", "1", "--out_dir", str(tmp_path / "runs")])
    assert exit_.value.code == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        "experiment.py: error: `q_sample` in hw10_diffusion.ipynb is not implemented yet: fill it in, run its "
        "check cell, save the notebook, and run again"]
    assert not (tmp_path / "runs").exists()


def test_a_tiny_experiment_run_in_process_writes_its_outputs_and_scores_its_samples(experiment, tmp_path, capsys):
    code = experiment.main(["--model", "diffusion", "--iter_max", "3", "--iter_save", "2", "--width", "8",
                            "--timesteps", "4", "--batch_size", "8", "--num_scored", "40", "--device", "cpu",
                            "--threads", "1", "--no_progress", "--out_dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0
    run = tmp_path / "model=diffusion_z=64_run=0000"
    assert sorted(p.name for p in run.iterdir()) == ["loss.png", "model-00002.pt", "model-00003.pt", "samples.png"]
    assert "Classifier Inception Score of 40 samples" in out and "Frechet distance" in out
    assert "200 samples (4 steps each)" in out


@pytest.mark.slow
def test_a_tiny_experiment_run_writes_its_outputs_and_scores_its_samples(tmp_path):
    folder = make_release_folder(tmp_path)
    proc = run_experiment(folder, "--model", "diffusion", "--iter_max", "3", "--iter_save", "2", "--width", "8",
                          "--timesteps", "4", "--batch_size", "8", "--num_scored", "40", "--device", "cpu",
                          "--threads", "1", "--no_progress")
    assert proc.returncode == 0, proc.stderr
    run = folder / "checkpoints" / "model=diffusion_z=64_run=0000"
    for name in ("model-00002.pt", "model-00003.pt", "samples.png", "loss.png"):
        assert (run / name).is_file(), name
    state = torch.load(run / "model-00003.pt", weights_only=True)
    assert state["timesteps"] == 4 and state["width"] == 8 and state["betas"].shape == (4,)
    assert "Classifier Inception Score of 40 samples" in proc.stdout
    assert "Frechet distance" in proc.stdout and "real digits: 9.64" in proc.stdout
