"""Sample quality for every generative model of the homework, measured with the bundle's
own MNIST classifier (``hw10kit.classifier``) in place of Inception:

* the classifier Inception Score, exp(E_x KL(p(y|x) || p(y))), between 1 and 10: high when
  each sample is confidently one digit and all ten digits appear;
* the Fréchet distance between Gaussians fitted to the classifier's penultimate features
  of the samples and of real test digits: 0 for identical statistics.

Both come from torchmetrics (``InceptionScore``, ``FrechetInceptionDistance``) with the
classifier as their feature extractor. Images are float32 in [0, 1], (N, 1, 28, 28) or (N, 784).
"""
from __future__ import annotations

import warnings

import torch
import torch.nn as nn

from . import classifier as clf


class _Logits(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x.float())


class _Features(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model
        self.num_features = clf.FEATURES

    def forward(self, x):
        return self.model.features(x.float())


def _batches(images, batch_size=1000):
    images = images.detach().cpu().float().reshape(-1, 1, 28, 28)
    for start in range(0, images.shape[0], batch_size):
        yield images[start:start + batch_size]


@torch.no_grad()
def inception_score(images, model=None, splits: int = 10) -> tuple:
    """(mean, std) of the classifier Inception Score over ``splits`` splits.

    Deterministic: torchmetrics shuffles the samples into splits with torch's global RNG, so
    the shuffle runs on a fixed seed in a forked RNG (the caller's random state is untouched)."""
    from torchmetrics.image.inception import InceptionScore

    model = model if model is not None else clf.load()
    with warnings.catch_warnings():  # "will save all extracted features": 10 floats per image here
        warnings.filterwarnings("ignore", message=".*save all extracted features.*")
        metric = InceptionScore(feature=_Logits(model), splits=splits)
    for batch in _batches(images):
        metric.update(batch)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        mean, std = metric.compute()
    return float(mean), float(std)


@torch.no_grad()
def frechet_distance(images, reference, model=None) -> float:
    """The Fréchet distance between the classifier features of ``images`` and ``reference``."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    model = model if model is not None else clf.load()
    metric = FrechetInceptionDistance(feature=_Features(model), input_img_size=(1, 28, 28))
    for batch in _batches(reference):
        metric.update(batch, real=True)
    for batch in _batches(images):
        metric.update(batch, real=False)
    return float(metric.compute())


def report(images, reference, model=None) -> dict:
    """``{"is": (mean, std), "is_reference": (mean, std), "fd": distance}`` for samples
    against real digits: the samples' score, the real digits' score (the ceiling to
    compare with), and the distance between the two."""
    model = model if model is not None else clf.load()
    return {"is": inception_score(images, model), "is_reference": inception_score(reference, model),
            "fd": frechet_distance(images, reference, model)}
