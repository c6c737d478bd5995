"""VAE training and evaluation (hw10kit.vae_training) and the student CLI
(source/hw10/experiment.py), run with the master notebook's solution code on CPU."""
from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch

from hw10kit import data as hw10data
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
    assert [it for it, _ in history] == list(range(1, 81))
    losses = [loss for _, loss in history]
    assert all(math.isfinite(v) for v in losses)
    assert sum(losses[-10:]) / 10 < sum(losses[:10]) / 10 - 50  # starts near 540 nats


def test_training_is_reproducible_for_a_given_seed(ns, mnist):
    train, _, _ = mnist
    runs = [vt.train_vae(_model(ns, seed=3), train, iter_max=15, seed=3, device=CPU,
                         progress=False) for _ in range(2)]
    assert runs[0] == runs[1]


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
