"""Stand-ins the probes swap in for graded functions that another question grades, so
that one broken answer costs only its own points. Grader only: ``make release`` leaves
this file out of the student's kit (``pipeline.layout.GRADER_ONLY``), because each
stand-in is a correct answer."""
from __future__ import annotations


def sample_gaussian(m, v):
    """Q2(a)'s sampler, used while Q2(b)'s negative_elbo_bound is probed."""
    import torch

    return m + torch.sqrt(v) * torch.randn_like(m)
