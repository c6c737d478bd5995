"""The bundle's own MNIST classifier: the feature extractor of every sample metric
(``hw10kit.sample_metrics``), shared by the GAN, diffusion and continual-learning problems.

It is trained here, deterministically, on the shipped MNIST, and its weights ship in
``data/mnist_classifier.pt``; nothing downloads Inception weights. Inputs are float32
images in [0, 1], shaped (B, 1, 28, 28) or (B, 784). ``python -m hw10kit.classifier``
retrains it and rewrites the weights (``make classifier``).
"""
from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

WEIGHTS = "mnist_classifier.pt"
FEATURES = 64


class MnistClassifier(nn.Module):
    """Two 5x5 convolutions with max-pooling, then two linear layers.
    ``forward(x)``: logits (B, 10); ``features(x)``: the penultimate layer (B, 64)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten())
        self.fc = nn.Sequential(nn.Linear(32 * 7 * 7, FEATURES), nn.ReLU())
        self.out = nn.Linear(FEATURES, 10)

    def features(self, x):
        return self.fc(self.conv(x.reshape(-1, 1, 28, 28)))

    def forward(self, x):
        return self.out(self.features(x))


def train_classifier(train_images, train_labels, *, epochs: int = 2, batch_size: int = 100,
                     lr: float = 4e-3, seed: int = 0, progress: bool = False) -> MnistClassifier:
    """Adam, a one-cycle cosine schedule, fixed seeds and one thread: the same weights on
    every run with this torch build on this kind of CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        model = MnistClassifier()
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        steps = epochs * (train_images.shape[0] // batch_size)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
        x_all = train_images.cpu().float().reshape(-1, 1, 28, 28)
        y_all = train_labels.cpu()
        started, step = time.perf_counter(), 0
        for epoch in range(epochs):
            order = torch.randperm(x_all.shape[0], generator=gen)
            for start in range(0, x_all.shape[0] - batch_size + 1, batch_size):
                idx = order[start:start + batch_size]
                loss = F.cross_entropy(model(x_all[idx]), y_all[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                step += 1
            if progress:
                print(f"epoch {epoch + 1}/{epochs}: {time.perf_counter() - started:.1f} s")
        return model.eval()
    finally:
        torch.set_num_threads(threads)


@torch.no_grad()
def accuracy(model, images, labels, batch_size: int = 2000) -> float:
    model.eval()
    correct = 0
    for start in range(0, images.shape[0], batch_size):
        logits = model(images[start:start + batch_size].float())
        correct += int((logits.argmax(1) == labels[start:start + batch_size]).sum())
    return correct / images.shape[0]


def load(root=None, device="cpu") -> MnistClassifier:
    """The shipped classifier (``data/mnist_classifier.pt``), in eval mode."""
    from . import data

    root = Path(root) if root is not None else data.find_root()
    path = root / WEIGHTS
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: copy data/ from the homework release again, "
                                "or retrain it with `python -m hw10kit.classifier`")
    model = MnistClassifier()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.to(device).eval()


def main() -> int:
    from . import data

    root = data.find_root()
    x, y = data.load("train", root=root)
    xt, yt = data.load("test", root=root)
    started = time.perf_counter()
    model = train_classifier(x, y, progress=True)
    seconds = time.perf_counter() - started
    acc = accuracy(model, xt, yt)
    torch.save(model.state_dict(), root / WEIGHTS)
    print(f"trained in {seconds:.1f} s; test accuracy {acc:.4f}; wrote {root / WEIGHTS}")
    return 0 if acc >= 0.99 else 1


if __name__ == "__main__":
    raise SystemExit(main())
