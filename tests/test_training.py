"""VAE training and evaluation (hw10kit.vae_training), the training harness every model
shares (hw10kit.training: history, plot, batches, NaN guard, threads) and the VAE's
``experiment.py``, run with the master notebook's solution code on CPU."""
from __future__ import annotations

import math
import re
import time
from pathlib import Path

import pytest
import torch

from hw10kit import data as hw10data
from hw10kit import gan_training as gt
from hw10kit import training
from hw10kit import vae_training as vt
from hw10kit.notebook import load_definitions
from student_folder import make_release_folder, run_experiment

ROOT = Path(__file__).resolve().parents[1]
MASTER = ROOT / "source" / "hw10" / "hw10_vae.ipynb"
SUMMARY = re.compile(r"^NELBO: (-?\d+\.\d+)\. KL: (-?\d+\.\d+)\. Rec: (-?\d+\.\d+)$")
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def ns():
    """The master notebook's definitions (solution code), read like experiment.py does."""
    return load_definitions(str(MASTER))


@pytest.fixture(scope="module")
def mnist():
    """(train slice (2000, 784), test images (10000, 784), fixed binarized subset (100, 784))."""
    root = hw10data.find_root(ROOT)
    train, _ = hw10data.load("train", root=root)
    test, test_labels = hw10data.load("test", root=root)
    x_subset, _ = hw10data.fixed_test_subset(test, test_labels)
    return train[:2000].clone(), test, x_subset


def _model(ns, z_dim=10, seed=0):
    torch.manual_seed(seed)
    return ns["VAE"](z_dim=z_dim)


def test_training_lowers_the_nelbo_on_an_mnist_slice(ns, mnist):
    train, _, _ = mnist
    history = vt.train_vae(_model(ns), train, iter_max=80, device=CPU, progress=False,
                           log_every=20)
    assert history["iteration"] == list(range(1, 81))
    losses = history["nelbo"]
    assert all(math.isfinite(v) for v in losses)
    assert sum(losses[-10:]) / 10 < sum(losses[:10]) / 10 - 50  # starts near 540 nats


def test_training_is_reproducible_for_a_given_seed(ns, mnist):
    train, _, _ = mnist
    runs = [vt.train_vae(_model(ns, seed=3), train, iter_max=15, seed=3, device=CPU,
                         progress=False, threads=1) for _ in range(2)]
    assert runs[0]["nelbo"] == runs[1]["nelbo"]


def test_training_calls_the_checkpoint_hook_every_save_interval_and_at_the_end(ns, mnist):
    train, _, _ = mnist
    saved = []
    vt.train_vae(_model(ns), train, iter_max=25, device=CPU, progress=False,
                 save_every=10, save_fn=lambda model, it: saved.append(it))
    assert saved == [10, 20, 25]


def test_evaluate_subset_returns_finite_metrics_with_nelbo_equal_kl_plus_rec(ns, mnist):
    _, _, x_subset = mnist
    metrics = vt.evaluate_subset(_model(ns), x_subset, passes=5)
    assert set(metrics) == {"nelbo", "kl", "rec"}
    assert all(isinstance(v, float) and math.isfinite(v) for v in metrics.values())
    assert metrics["kl"] >= 0
    assert metrics["nelbo"] == pytest.approx(metrics["kl"] + metrics["rec"], rel=1e-5)


def test_evaluate_course_reproduces_the_course_evaluation_draw_for_draw(ns, mnist):
    """The course: torch.manual_seed(0); xl = torch.bernoulli(xl); passes of
    negative_elbo_bound continuing the same generator (3 passes here)."""
    _, test, _ = mnist
    labels = hw10data.load("test", root=hw10data.find_root(ROOT))[1]
    model = _model(ns)
    torch.manual_seed(0)
    xl = torch.bernoulli(hw10data.course_test_images(test, labels)[0])
    want = [0.0, 0.0, 0.0]
    model.eval()
    with torch.no_grad():
        for _ in range(3):
            for i, t in enumerate(model.negative_elbo_bound(xl)):
                want[i] += t.item() / 3
    got = vt.evaluate_course(model, test, labels, passes=3)
    assert [got[k] for k in vt.METRICS] == pytest.approx(want, rel=1e-6)


def test_evaluate_full_returns_a_finite_bound_that_is_reproducible(ns, mnist):
    _, test, _ = mnist
    model = _model(ns)
    torch.manual_seed(0)
    first = vt.evaluate_full(model, test, seed=0, batch_size=2500)
    torch.manual_seed(0)
    second = vt.evaluate_full(model, test, seed=0, batch_size=2500)
    assert isinstance(first, float) and math.isfinite(first) and first > 0
    assert first == pytest.approx(second)


def test_repeat_over_seeds_reports_mean_and_standard_error(ns, mnist, capsys):
    train, _, x_subset = mnist
    summary = vt.repeat_over_seeds(lambda: ns["VAE"](z_dim=10), train, x_subset, [0, 1],
                                   passes=2, iter_max=5, device=CPU, progress=False)
    assert set(summary) == {"nelbo", "kl", "rec"}
    for mean, stderr in summary.values():
        assert math.isfinite(mean) and math.isfinite(stderr) and stderr >= 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("seed ")]
    assert len(lines) == 2


def test_save_sample_grid_writes_a_10_by_20_png(ns, tmp_path):
    from PIL import Image

    path = tmp_path / "samples.png"
    grid = vt.save_sample_grid(_model(ns), path, rows=10, cols=20)
    with Image.open(path) as img:
        assert img.size == (20 * 30 + 2, 10 * 30 + 2)  # 28-pixel digits, 2-pixel padding
    assert grid.shape == (10 * 30 + 2, 20 * 30 + 2)
    assert grid.min() >= 0 and grid.max() <= 1


def test_plot_loss_curve_writes_a_png(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = tmp_path / "loss.png"
    fig = vt.plot_loss_curve([(i, 500.0 / i + 100) for i in range(1, 301)], path)
    plt.close(fig)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_summary_line_has_the_course_format():
    line = vt.summary_line({"nelbo": 101.23456, "kl": 24.5, "rec": 76.73456})
    assert line == "NELBO: 101.2346. KL: 24.5000. Rec: 76.7346"
    assert SUMMARY.match(line)


def test_experiment_cli_trains_the_notebook_vae_and_ends_with_the_summary_line(tmp_path):
    folder = make_release_folder(tmp_path)
    proc = run_experiment(folder, "--model", "vae", "--iter_max", "50", "--num_latents", "10",
                           "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    match = SUMMARY.match(last)
    assert match, proc.stdout
    nelbo, kl, rec = map(float, match.groups())
    assert nelbo == pytest.approx(kl + rec, abs=2e-3)
    assert "Negative IWAE-100 bound on the test subset" in proc.stdout
    run_dir = folder / "checkpoints" / "model=vae_z=10_run=0000"
    for name in ("samples.png", "loss.png", "model-00050.pt"):
        assert (run_dir / name).is_file(), name


def test_experiment_cli_explains_an_unfilled_notebook(tmp_path):
    folder = make_release_folder(tmp_path, filled=False)
    proc = run_experiment(folder, "--model", "vae", "--iter_max", "5", "--device", "cpu",
                           "--no_progress")
    assert proc.returncode == 1
    assert "not implemented yet" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_make_adam_uses_the_fused_kernel_on_cpu():
    opt = vt.make_adam([torch.nn.Parameter(torch.zeros(3))], 1e-3, CPU)
    assert opt.defaults["fused"] is True and opt.defaults["lr"] == 1e-3


def test_compiled_loss_falls_back_to_eager_when_compilation_fails(ns, mnist, monkeypatch):
    def broken(fn, **kw):
        def call(x):
            raise RuntimeError("no C++ compiler")
        return call

    monkeypatch.setattr(torch, "compile", broken)
    train, _, _ = mnist
    loss = vt.compiled_loss(_model(ns), enabled=True)(torch.bernoulli(train[:4]))
    assert loss.shape == () and math.isfinite(loss.item())


def test_course_recipe_keeps_the_learning_rate_constant():
    schedule = vt.lr_schedule("course", 1e-3, 10000)
    assert {schedule(it) for it in (1, 5000, 10000)} == {1e-3}


def test_tuned_recipe_warms_up_then_decays_to_zero():
    schedule = vt.lr_schedule("tuned", 1e-3, 10000)
    assert schedule(1) < schedule(200) == pytest.approx(2e-3)
    assert schedule(5000) < schedule(1000) and schedule(10000) == pytest.approx(0.0, abs=1e-12)


def test_iwae_with_one_sample_estimates_the_nelbo(ns, mnist):
    _, _, x_subset = mnist
    model = _model(ns)
    torch.manual_seed(0)
    nelbo = vt.evaluate_subset(model, x_subset, passes=200)["nelbo"]
    assert vt.evaluate_iwae(model, x_subset, k=1, passes=200) == pytest.approx(nelbo, rel=2e-3)


def test_iwae_bound_is_tighter_than_the_nelbo_after_training(ns, mnist):
    train, _, x_subset = mnist
    model = _model(ns)
    vt.train_vae(model, train, iter_max=150, device=CPU, progress=False)
    nelbo = vt.evaluate_subset(model, x_subset, passes=50)["nelbo"]
    assert vt.evaluate_iwae(model, x_subset, k=100, passes=2) < nelbo - 1.0


def test_each_epoch_visits_every_image_once_like_a_shuffled_dataloader():
    class Recorder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))
            self.seen = []

        def loss(self, x):
            self.seen.append(x.argmax(1))  # image i is the one-hot row i: binarizes to itself
            return (self.w ** 2).sum() + 1.0, {}

    images = torch.eye(300, 784)
    model = Recorder()
    vt.train_vae(model, images, iter_max=9, batch_size=100, device=CPU, progress=False)
    epochs = torch.stack(model.seen).reshape(3, 300)
    for epoch in epochs:
        assert sorted(epoch.tolist()) == list(range(300))
    assert not torch.equal(epochs[0], epochs[1])


# --------------------------------------------------------------------- the harness (hw10kit.training)

def test_the_vae_history_has_the_harness_format(ns, mnist):
    history = vt.train_vae(_model(ns), mnist[0], iter_max=6, device=CPU, progress=False)
    assert history["losses"] == vt.LOSSES and set(vt.LOSSES) == {"nelbo"}
    assert history["iteration"] == list(range(1, 7)) and len(history["nelbo"]) == 6
    assert history["precision"] == "fp32" and history["seconds"] > 0 and history["threads"] >= 1


def test_every_model_plots_its_history_with_the_one_harness_plot(monkeypatch):
    plotted = []
    monkeypatch.setattr(training, "plot_history", lambda history, path=None, **kw: plotted.append(history))
    vt.plot_loss_curve({"iteration": [1], "nelbo": [500.0], "losses": vt.LOSSES})
    gt.plot_losses({"iteration": [1], "loss_d": [1.4], "loss_g": [0.7], "losses": gt.LOSSES})
    assert [h["losses"] for h in plotted] == [vt.LOSSES, gt.LOSSES]


def test_plot_history_draws_every_loss_with_its_label(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    history = {"iteration": list(range(1, 301)), "loss_d": [1.2] * 300, "loss_g": [0.8] * 300,
               "losses": {"loss_d": "discriminator", "loss_g": "generator"}}
    fig = training.plot_history(history, tmp_path / "loss.png")
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    plt.close(fig)
    assert labels == ["discriminator (mean of 60)", "generator (mean of 60)"]
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_loss_curve_still_takes_the_former_list_of_pairs(tmp_path):
    import matplotlib.pyplot as plt

    fig = vt.plot_loss_curve([(i, 500.0 / i + 100) for i in range(1, 301)], tmp_path / "loss.png")
    plt.close(fig)
    assert (tmp_path / "loss.png").is_file()


def test_both_models_draw_their_batches_from_the_one_batching_function(ns, mnist, monkeypatch):
    import torch.nn.functional as F

    sizes = []
    real = training.batches
    monkeypatch.setattr(training, "batches", lambda images, size, *a: sizes.append(tuple(images.shape)) or
                        real(images, size, *a))
    vt.train_vae(_model(ns), mnist[0], iter_max=1, device=CPU, progress=False)

    def loss_d(g, d, x, *, device):
        return F.softplus(-d(x)).mean() + F.softplus(d(g(torch.randn(x.shape[0], g.dim_z)).detach())).mean()

    def loss_g(g, d, x, *, device):
        return F.softplus(-d(g(torch.randn(x.shape[0], g.dim_z)))).mean()

    gt.train_gan(gt.Generator(64), gt.Discriminator(), mnist[0][:300], loss_d, loss_g, iter_max=1,
                 device=CPU, progress=False)
    assert sizes == [(2000, 784), (300, 1, 28, 28)]


def test_the_nan_guard_stops_a_diverging_run_within_log_every_steps():
    w = torch.nn.Parameter(torch.ones(()))
    opt = training.make_adam([w], 1e-3)
    calls = []

    def step(batch):
        calls.append(1)
        loss = w * (float("nan") if len(calls) >= 3 else 1.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return {"loss": loss}

    with pytest.raises(FloatingPointError, match=r"loss became nan by iteration 5\. check the sign"):
        training.fit(step, iter([torch.zeros(1)] * 1000), iter_max=1000, losses={"loss": "loss"},
                     device=CPU, hint="check the sign", log_every=5, progress=False, threads=1)
    assert len(calls) == 5


def test_fit_records_plain_floats_beside_the_losses_and_saves_at_intervals_and_the_end():
    saved = []
    history = training.fit(lambda b: {"loss": b.sum(), "lr": 0.5}, iter([torch.ones(2)] * 5), iter_max=5,
                           losses={"loss": "the loss"}, device=CPU, hint="", progress=False,
                           save_every=2, save=saved.append, threads=1)
    assert history["loss"] == [2.0] * 5 and history["lr"] == [0.5] * 5
    assert saved == [2, 4, 5]


def test_batches_visit_every_image_once_per_epoch_and_drop_the_remainder():
    images = torch.arange(250.0).reshape(250, 1)
    stream = training.batches(images, 100, torch.Generator().manual_seed(0))
    epochs = [torch.cat([next(stream) for _ in range(2)]).flatten() for _ in range(3)]
    assert all(len(set(e.tolist())) == 200 for e in epochs)
    assert not torch.equal(epochs[0], epochs[1])


# --------------------------------------------------------------------- threads


@pytest.mark.parametrize("busy, expected", [(0, 2), (1, 1), (5, 1)])
def test_auto_threads_take_the_cores_no_other_process_is_busy_on(monkeypatch, busy, expected):
    monkeypatch.setattr(training, "_cores", lambda: 2)
    monkeypatch.setattr(training, "busy_elsewhere", lambda: busy)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert training.choose_threads("auto", CPU) == expected


def test_auto_threads_never_exceed_torchs_own_default(monkeypatch):
    monkeypatch.setattr(training, "_cores", lambda: 16)
    monkeypatch.setattr(training, "busy_elsewhere", lambda: 0)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)
    assert training.choose_threads("auto", CPU) == 4


def test_the_threads_environment_variable_is_the_default(monkeypatch):
    monkeypatch.setenv(training.THREADS_ENV, "1")
    assert training.choose_threads(None, CPU) == 1
    assert training.choose_threads(3, CPU) == 3  # an argument wins


@pytest.mark.parametrize("value", ["0", "two", "1.5"])
def test_a_bad_thread_count_is_refused(value):
    with pytest.raises(ValueError, match="threads must be 'auto' or a positive number"):
        training.choose_threads(value, CPU)


def test_busy_elsewhere_counts_another_processs_busy_core():
    import subprocess

    if training.busy_elsewhere() is None:
        pytest.skip("no /proc/stat here")
    hog = subprocess.Popen(["yes"], stdout=subprocess.DEVNULL)
    try:
        time.sleep(0.2)
        assert training.busy_elsewhere() >= 1
    finally:
        hog.kill()
        hog.wait()


def test_training_runs_with_the_chosen_threads_and_restores_torchs_count(ns, mnist):
    seen = []
    before = torch.get_num_threads()
    model = _model(ns)
    loss = model.loss

    def spying(x):
        seen.append(torch.get_num_threads())
        return loss(x)

    model.loss = spying
    history = vt.train_vae(model, mnist[0], iter_max=2, device=CPU, progress=False, threads=1)
    assert seen == [1, 1] and history["threads"] == 1
    assert torch.get_num_threads() == before
