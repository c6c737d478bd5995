"""Student-facing helpers for EECS 182 HW10: MNIST loading (``hw10kit.data``), the
public checks (``hw10kit.checks.check``), VAE training (``hw10kit.vae_training``) and the
notebook reader shared by the grader and ``experiment.py`` (``hw10kit.notebook``)."""
