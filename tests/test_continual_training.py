"""hw10kit/continual_training.py: the tasks, the bounded memory, the run's bookkeeping and its
one-line messages, on tiny synthetic tasks (seconds), with the solution notebook's functions."""
import inspect

import numpy as np
import pytest
import torch
from hw10kit import continual_training as ct
from hw10kit.notebook import load_definitions
from hw10kit.unfinished import Unfinished

NOTEBOOK = "source/hw10/hw10_continual.ipynb"


@pytest.fixture(scope="module")
def fns():
    ns = load_definitions(NOTEBOOK)
    return ct.Functions(ns["estimate_fisher"], ns["ewc_penalty"], ns["mix_replay"])


def tiny_tasks(n=600, seed=0):
    """Three permuted tasks of a separable 10-class problem on 784 inputs."""
    gen = torch.Generator().manual_seed(seed)
    centers = torch.rand(10, 784, generator=gen)
    y = torch.arange(n) % 10
    x = (centers[y] + 0.3 * torch.rand(n, 784, generator=gen)).clamp(0, 1)
    split = (x[:400], y[:400]), (x[400:500], y[400:500]), (x[500:], y[500:])
    return [ct.Task(f"task {t + 1}", None if s is None else torch.as_tensor(ct.permutation(s)), *split)
            for t, s in enumerate(ct.PERMUTATION_SEEDS)]


KW = dict(epochs=1, batch_size=50, device="cpu", progress=False, threads=1)


def test_the_permutations_are_the_courses():
    assert np.array_equal(ct.permutation(None), np.arange(784))
    for s in (1, 2):
        assert np.array_equal(ct.permutation(s), np.random.RandomState(s).permutation(784))
    task = tiny_tasks()[1]
    x = task.train[0][:3]
    assert torch.equal(task.view(x), x[:, torch.as_tensor(np.random.RandomState(1).permutation(784))])


def test_the_memory_is_class_balanced_bounded_and_permuted():
    task = tiny_tasks()[2]
    x, y = ct.class_balanced(task, 100, torch.Generator().manual_seed(0))
    assert x.shape == (100, 784) and torch.equal(torch.bincount(y, minlength=10), torch.full((10,), 10))
    train_x, train_y = task.split("train")
    for row, label in zip(x[:20], y[:20]):   # each stored example is a permuted training example, with its label
        match = (train_x == row).all(1).nonzero().flatten()
        assert len(match) >= 1 and int(train_y[match[0]]) == int(label)
    x2, _ = ct.class_balanced(task, 100, torch.Generator().manual_seed(1))
    assert not torch.equal(x, x2)            # drawn at random within each class
    _, y3 = ct.class_balanced(task, 25, torch.Generator().manual_seed(0))
    assert len(y3) == 25 and torch.bincount(y3, minlength=10).tolist() == [3] * 5 + [2] * 5


def test_average_seen_is_the_mean_over_the_tasks_seen():
    R = [[0.9, 0.1, 0.1], [0.8, 0.9, 0.1], [0.7, 0.8, 0.9]]
    assert np.allclose(ct.average_seen(R), [0.9, 0.85, 0.8])


@pytest.mark.parametrize("method", [ct.NAIVE, ct.ewc(10.0, fisher_samples=64), ct.rehearsal(50, 20)],
                         ids=["naive", "ewc", "rehearsal"])
def test_a_run_fills_the_accuracy_matrix(fns, method):
    tasks = tiny_tasks()
    first = ct.train_first_task("mlp", tasks, seed=0, **KW)
    run = ct.continue_training(first, tasks, method, fns, **KW)
    assert run.R.shape == (3, 3) and run.V.shape == (3, 3)
    assert np.allclose(run.R[0], first.R0)  # every method starts from the same task-1 model
    assert all(run.R[i, i] > 0.5 for i in range(3))  # each task is learned (chance is 0.1)
    assert 0 < run.final <= 1 and len(run.histories) == 3
    if method.kind == "ewc":
        assert "penalty" in run.histories[-1] and max(run.histories[-1]["penalty"]) > 0


def test_the_sweep_chooses_on_validation(fns):
    tasks = tiny_tasks()
    first = ct.train_first_task("mlp", tasks, seed=0, **KW)
    runs = ct.sweep(first, tasks, [1.0, 100.0], fns, fisher_samples=32, **KW)
    assert [r.method.ewc_lambda for r in runs] == [1.0, 100.0]
    assert ct.best(runs) is max(runs, key=lambda r: r.final_val)


def test_each_task_gets_a_fresh_optimizer():
    """No momentum crosses a task boundary: the optimizer is built inside each task's training."""
    source = inspect.getsource(ct._train_task)
    assert "torch.optim.SGD(" in source and "DataLoader(" not in inspect.getsource(ct)


def test_an_unfinished_function_stops_the_run_with_one_line(fns):
    tasks = tiny_tasks()
    first = ct.train_first_task("mlp", tasks, seed=0, **KW)

    def estimate_fisher(model, xs, ys):
        raise NotImplementedError()

    blank = ct.Functions(estimate_fisher, fns.ewc_penalty, fns.mix_replay)
    with pytest.raises(Unfinished, match="estimate_fisher"):
        ct.continue_training(first, tasks, ct.ewc(1.0), blank, **KW)
    with pytest.raises(Unfinished, match="mix_replay"):
        ct.collect({"naive": object()}, {"naive": "x", "rehearsal": "mix_replay"})


def test_the_fisher_reaches_the_penalty_detached_and_the_model_keeps_no_gradient(fns):
    tasks = tiny_tasks()
    first = ct.train_first_task("mlp", tasks, seed=0, **KW)
    seen = []

    def spy(model, fisher, star, lam):
        seen.append((all(not f.requires_grad for f in fisher.values()), all(not s.requires_grad for s in star.values())))
        return fns.ewc_penalty(model, fisher, star, lam)

    ct.continue_training(first, tasks, ct.ewc(1.0, 32), ct.Functions(fns.estimate_fisher, spy), **KW)
    assert seen and all(a and b for a, b in seen)
    # tasks 2 and 3 of ~8 steps each: task 3's steps hold two penalties (one per earlier task)
    assert len(seen) == 8 + 2 * 8


def test_the_networks_are_the_courses():
    cnn = ct.CourseCNN()
    convs = [m for m in cnn.modules() if isinstance(m, torch.nn.Conv2d)]
    linears = [m for m in cnn.modules() if isinstance(m, torch.nn.Linear)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [(1, 10, (5, 5)), (10, 20, (5, 5))]
    assert [(l.in_features, l.out_features) for l in linears] == [(320, 50), (50, 10)]
    assert cnn(torch.rand(3, 784)).shape == (3, 10) and ct.MLP()(torch.rand(3, 784)).shape == (3, 10)


def test_a_sweep_records_a_lambda_at_which_sgd_diverges_and_does_not_choose_it(fns):
    tasks = tiny_tasks()
    first = ct.train_first_task("mlp", tasks, seed=0, **KW)
    runs = ct.sweep(first, tasks, [1.0, 1e12], fns, fisher_samples=32, **KW)
    assert not runs[0].diverged and "became" in runs[1].diverged and np.isnan(runs[1].R[-1]).all()
    assert ct.best(runs) is runs[0]
    with pytest.raises(FloatingPointError):
        ct.continue_training(first, tasks, ct.ewc(1e12, 32), fns, **KW)
