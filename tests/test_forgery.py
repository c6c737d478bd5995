"""A pasted cell cannot forge the checks: probes are bound before student code runs,
the reader refuses changes to imported code, the worker checks that what the probes
rely on is unchanged after every call, replies carry a nonce, and an "internal error"
is only believed when the judge reproduces it without the student's code. Each attack
is graded through the real judge on a submission whose graded function is unimplemented:
it earns what that function earns (0), and the feedback says why."""
import nbformat
import numpy as np
from grading_helpers import vae_entry, REPO, by_name, judge, score_of, solution_with, write_folder

GAN_MASTER = REPO / "source" / "hw10" / "hw10_gan.ipynb"
Q2A, Q2B = "Q2(a) sample_gaussian", "Q2(b) negative_elbo_bound"
NS_G = "Q3(c) loss_nonsaturating_g"
STUB_SG = "def sample_gaussian(m, v):\n    raise NotImplementedError()"


def gan_with(*cells, stub="loss_nonsaturating_g"):
    """The GAN master notebook with ``stub`` unimplemented, plus cells."""
    nb = nbformat.read(GAN_MASTER, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.source.startswith(f"def {stub}("):
            cell.source = f"def {stub}(g, d, x_real, *, device):\n    raise NotImplementedError()"
    nb.cells.extend(nbformat.v4.new_code_cell(src) for src in cells)
    return nb


def graded(tmp_path, nb, name="hw10_vae.ipynb", **env):
    return judge(write_folder(tmp_path / "sub", nb, name=name), tmp_path / "results.json", **env)


FORGED_GAN_PROBE = '''
import numpy as _np
import hw10kit.checks.gan_probes
def _forged(ns, inputs):
    """What the measured attack did: reference formulas applied to the check's inputs."""
    real = inputs["fake"].reshape(len(inputs["fake"]), -1).astype(_np.float64)
    logits = real @ inputs["w"].astype(_np.float64) + float(inputs["b"])
    p = 1 / (1 + _np.exp(logits))
    return {"shape": [], "value": _np.float64(_np.mean(_np.logaddexp(0, -logits))), "requires_grad": True,
            "g_batches": [len(inputs["real"])],
            "grad_images": (-p[:, None] * inputs["w"][None, :] / len(logits)).reshape(inputs["fake"].shape),
            "grad_w": -(p[:, None] * real).mean(0), "grad_b": _np.float64(-p.mean())}
hw10kit.checks.gan_probes.gan_loss_call = _forged
'''


def test_a_cell_replacing_the_gan_probe_is_refused_and_earns_nothing(tmp_path):
    doc = graded(tmp_path, gan_with(FORGED_GAN_PROBE), name="hw10_gan.ipynb")
    assert score_of(doc, NS_G) == 0
    assert "hw10kit.checks.gan_probes.gan_loss_call" in doc["output"] and "was not run" in doc["output"]
    assert score_of(doc, "Q3(c) loss_minimax_g") == 2.0  # the other questions are untouched


WRAPPED_VAE_PROBE = '''
from hw10kit.checks import vae_probes
_orig = vae_probes.sample_gaussian_call
def _reference(m, v):  # what the measured attack pasted: a correct sampler under another name
    return m + v.sqrt() * torch.randn_like(m)
def _wrapped(ns, inputs):
    return _orig(dict(ns, sample_gaussian=_reference), inputs)
vae_probes.sample_gaussian_call = _wrapped
'''


def test_a_cell_wrapping_the_vae_sampler_probe_is_refused_and_earns_nothing(tmp_path):
    doc = graded(tmp_path, solution_with(STUB_SG, WRAPPED_VAE_PROBE))
    assert score_of(doc, Q2A) == 0 and score_of(doc, Q2B) == 6.0
    assert "vae_probes.sample_gaussian_call" in doc["output"] and "was not run" in doc["output"]


def test_setattr_on_a_probe_module_is_refused(tmp_path):
    cell = WRAPPED_VAE_PROBE.replace("vae_probes.sample_gaussian_call = _wrapped",
                                     "_ = setattr(vae_probes, 'sample_gaussian_call', _wrapped)")
    doc = graded(tmp_path, solution_with(STUB_SG, cell))
    assert score_of(doc, Q2A) == 0
    assert "through setattr" in doc["output"]


def test_patching_a_tensor_method_at_top_level_is_refused(tmp_path):
    cell = "import torch\n_mean = torch.Tensor.mean\ntorch.Tensor.mean = lambda self, *a, **k: _mean(self, *a, **k)"
    doc = graded(tmp_path, gan_with(cell), name="hw10_gan.ipynb")
    assert score_of(doc, NS_G) == 0
    assert "`torch.Tensor.mean`" in doc["output"] and "was not run" in doc["output"]


def test_a_function_that_patches_autograd_when_called_is_reported_as_tampering(tmp_path):
    cell = ("import torch\n_real_grad = torch.autograd.grad\n"
            "def sample_gaussian(m, v):\n"
            "    def fake(outputs, inputs, **kw):\n"
            "        return tuple(torch.ones_like(t) for t in inputs)\n"
            "    torch.autograd.grad = fake\n"
            "    return m + v.sqrt() * torch.randn_like(m)")
    doc = graded(tmp_path, solution_with(cell))
    assert score_of(doc, Q2A) == 0 and score_of(doc, Q2B) == 6.0
    outputs = [t["output"] for t in doc["tests"] if t["name"].startswith(Q2A)]
    assert all("your code replaced torch.autograd.grad" in o and "cannot trust" in o for o in outputs)


def test_replacing_a_probe_helpers_code_when_called_is_reported_as_tampering(tmp_path):
    cell = ("import torch\nimport hw10kit.checks.core as _c\n"
            "def sample_gaussian(m, v):\n"
            "    _c.to_numpy.__code__ = (lambda t: t.detach().numpy() * 0).__code__\n"
            "    raise NotImplementedError()")
    doc = graded(tmp_path, solution_with(cell))
    assert score_of(doc, Q2A) == 0


def test_the_kits_reference_function_is_not_an_answer(tmp_path):
    cell = "from hw10kit.checks.core import to_numpy as sample_gaussian"
    doc = graded(tmp_path, solution_with(cell))
    assert score_of(doc, Q2A) == 0
    assert "course kit's own function" in vae_entry(doc)["output"]


def test_a_blindly_forged_reply_line_fails_its_question(tmp_path):
    forged = '{"id": 1, "error": "x", "internal": true}\\n'
    cell = ("import os, sys\n" + STUB_SG.replace("    raise NotImplementedError()",
            f"    os.write(int(sys.argv[2]), {forged!r}.encode())\n    raise NotImplementedError()"))
    doc = graded(tmp_path, solution_with(cell))
    assert score_of(doc, Q2A) == 0 and score_of(doc, Q2B) == 6.0


def test_attributes_of_the_students_own_class_can_still_be_set(tmp_path):
    cell = ("VAE.scale = 1.0\n"
            "class VAE(VAE):\n"
            "    def negative_elbo_bound(self, x):\n"
            "        nelbo, kl, rec = super().negative_elbo_bound(x)\n"
            "        return nelbo * self.scale, kl * self.scale, rec * self.scale")
    doc = graded(tmp_path, solution_with(cell))
    assert score_of(doc, Q2B) == 6.0 and "was not run" not in doc["output"]


# ------------------------------------------------------------- internal errors
def _check(probe):
    from hw10kit.checks.core import Check

    return Check("Q9(z)", "f", "t", 1.0, lambda rng: {"x": np.zeros(2)}, probe, lambda i, o: (True, "ok"))


def probe_broken_before_the_call(ns, inputs):
    inputs["missing"]  # a bug in the probe: fails for every submission
    return {}


def probe_that_uses_the_result(ns, inputs):
    from hw10kit.checks.core import lookup

    value = lookup(ns, "f")()
    return {"n": value.shape[5]}  # the student's result makes the probe's own line fail


def test_an_error_in_the_probe_itself_is_internal_and_costs_nothing():
    from hw10kit.checks.core import call_probe, judge as judge_reply

    check = _check(probe_broken_before_the_call)
    reply = call_probe(check.probe, "f", {"f": lambda: None}, {"x": 1}, 0)
    assert reply.get("internal") and "KeyError" in reply["error"]
    passed, message = judge_reply(check, {"x": 1}, reply)
    assert passed and message.startswith("internal error in the check (not your code)")


def test_an_error_with_no_student_line_after_the_students_code_ran_is_charged():
    import torch
    from hw10kit.checks.core import call_probe, judge as judge_reply

    check = _check(probe_that_uses_the_result)
    reply = call_probe(check.probe, "f", {"f": lambda: torch.zeros(2)}, {"x": 1}, 0)
    assert reply.get("internal")  # the sandbox cannot tell...
    passed, message = judge_reply(check, {"x": 1}, reply)  # ...the judge can
    assert not passed and "no line of your code is in the traceback" in message


def test_a_forged_internal_claim_earns_nothing():
    from hw10kit.checks.core import judge as judge_reply

    check = _check(probe_that_uses_the_result)
    passed, _ = judge_reply(check, {"x": 1}, {"error": "anything", "internal": True})
    assert not passed


def test_a_backward_pass_that_fails_is_the_students_error_not_an_internal_one(tmp_path):
    cell = ("import torch\ndef sample_gaussian(m, v):\n    s = v.sqrt()\n    z = m + s * s\n"
            "    s.mul_(1.0)  # changes a tensor the backward pass needs\n    return z")
    doc = graded(tmp_path, solution_with(cell))
    out = by_name(doc)[f"{Q2A}: gradient w.r.t. m (reparameterization)"]["output"] \
        if f"{Q2A}: gradient w.r.t. m (reparameterization)" in by_name(doc) else \
        next(t["output"] for t in doc["tests"] if t["name"].startswith(Q2A) and "gradient" in t["name"])
    assert score_of(doc, Q2A) < 4.0
    assert "internal error in the check" not in out
