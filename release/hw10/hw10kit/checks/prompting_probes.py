"""Probes for Problem 1 (prompting): they call the student's functions on the check's inputs
and report plain data (strings, lists, arrays). They hold no reference values and no
correct answer.

Inputs: ``item`` and ``shots`` are CommonsenseQA-shaped dicts (``question``, ``choices``
with ``label`` and ``text`` lists, ``answerKey``); ``texts`` a list of strings;
``tops`` a list of ``{token: logprob}`` dicts; the soft-prompt probes take sizes and
float arrays and build small torch modules of their own (no GPT-2, no download).
"""
from __future__ import annotations

from .core import ProbeError, lookup, tensor_out, to_numpy

LETTERS = "ABCDE"


def _text(value, what: str) -> str:
    if not isinstance(value, str):
        raise ProbeError(f"{what} should be a str, but it is a {type(value).__name__}.")
    return value


def build_prompt_call(ns: dict, inputs: dict) -> dict:
    """``build_prompt(item, shots, instruction, wrong_labels, seed)`` for each seed in
    ``inputs["seeds"]`` (one call when absent) -> ``{"prompts": [str, ...]}``."""
    fn = lookup(ns, "build_prompt")
    prompts = []
    for seed in inputs.get("seeds", [0]):
        out = fn(inputs["item"], list(inputs.get("shots", [])), instruction=inputs.get("instruction", ""),
                 wrong_labels=bool(inputs.get("wrong_labels", False)), seed=int(seed))
        prompts.append(_text(out, "build_prompt's return value"))
    return {"prompts": prompts}


def parse_answer_call(ns: dict, inputs: dict) -> dict:
    """``parse_answer(text)`` for each text -> ``{"answers": [letter or None, ...],
    "types": [type names]}`` (anything else than a str or None is reported by its repr)."""
    fn = lookup(ns, "parse_answer")
    answers, types = [], []
    for text in inputs["texts"]:
        out = fn(text)
        types.append(type(out).__name__)
        answers.append(out if out is None or isinstance(out, str) else repr(out)[:40])
    return {"answers": answers, "types": types}


def _five(value, what: str):
    import numpy as np

    if isinstance(value, dict):
        value = [value.get(k, value.get(" " + k, 0.0)) for k in LETTERS]
    try:
        import torch

        if isinstance(value, torch.Tensor):
            value = to_numpy(value)
        elif isinstance(value, (list, tuple)):
            value = [float(v) if isinstance(v, torch.Tensor) else v for v in value]
    except ImportError:  # pragma: no cover - torch is always there
        pass
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ProbeError(f"{what} should be 5 numbers (A to E), but it is a {type(value).__name__}.") from None
    if arr.shape != (5,):
        raise ProbeError(f"{what} should hold 5 probabilities (A, B, C, D, E), but it has shape {arr.shape}.")
    return arr


def choice_probabilities_call(ns: dict, inputs: dict) -> dict:
    """``choice_probabilities(top)`` for each ``top`` dict -> ``{"probs": (N, 5)}``. The
    dicts are copied first, so a function that changes its argument changes nothing."""
    import numpy as np

    fn = lookup(ns, "choice_probabilities")
    rows = [_five(fn(dict(top)), "choice_probabilities' return value") for top in inputs["tops"]]
    return {"probs": np.stack(rows)}


# ------------------------------------------------------------------ soft prompts
def _soft_inputs(inputs: dict, dtype_name="float32"):
    import torch

    dtype = getattr(torch, dtype_name)
    embedding = torch.nn.Embedding(*inputs["table"].shape, dtype=dtype)
    with torch.no_grad():
        embedding.weight.copy_(torch.tensor(inputs["table"], dtype=dtype))
    embedding.weight.requires_grad_(False)
    prompt = torch.nn.Parameter(torch.tensor(inputs["prompt"], dtype=dtype))
    ids = torch.tensor(inputs["ids"], dtype=torch.long)
    mask = torch.tensor(inputs["mask"], dtype=torch.long)
    return prompt, embedding, ids, mask


def prepend_soft_prompt_call(ns: dict, inputs: dict) -> dict:
    """``prepend_soft_prompt(prompt, embedding, input_ids, attention_mask)``; then the
    gradient of ``sum(weights * embeds)`` w.r.t. the prompt (``None`` when none reaches it).
    Reports both outputs, their dtypes, and whether the inputs were left unchanged."""
    import torch

    prompt, embedding, ids, mask = _soft_inputs(inputs, inputs.get("dtype", "float32"))
    before = (prompt.detach().clone(), ids.clone(), mask.clone())
    out = lookup(ns, "prepend_soft_prompt")(prompt, embedding, ids, mask)
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        got = type(out).__name__ + (f" of length {len(out)}" if isinstance(out, (tuple, list)) else "")
        raise ProbeError(f"prepend_soft_prompt should return a tuple (inputs_embeds, attention_mask), "
                         f"but it returned {got}")
    embeds = tensor_out(out[0], "inputs_embeds (item 0)")
    new_mask = tensor_out(out[1], "the attention mask (item 1)")
    report = {"embeds": to_numpy(embeds), "mask": to_numpy(new_mask),
              "embeds_dtype": str(embeds.dtype).replace("torch.", ""),
              "mask_dtype": str(new_mask.dtype).replace("torch.", ""),
              "grad": None, "grad_error": ""}
    weights = torch.tensor(inputs["weights"], dtype=embeds.dtype) if "weights" in inputs else None
    if weights is not None and tuple(weights.shape) == tuple(embeds.shape):
        if not embeds.requires_grad:
            report["grad_error"] = "inputs_embeds does not require grad: no gradient can reach the prompt"
        else:
            (weights * embeds).sum().backward()
            report["grad"] = None if prompt.grad is None else to_numpy(prompt.grad)
    report["inputs_unchanged"] = bool(torch.equal(before[0], prompt.detach()) and torch.equal(before[1], ids)
                                      and torch.equal(before[2], mask))
    return report


def _tiny_lm(vocab: int, dim: int, seed: int):
    """A small "language model" shaped like Hugging Face's (``get_input_embeddings``,
    ``inputs_embeds``): an embedding, a block, an output layer and a buffer."""
    import torch
    from torch import nn

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte = nn.Embedding(vocab, dim)
            self.block = nn.Sequential(nn.Linear(dim, dim), nn.LayerNorm(dim), nn.Tanh())
            self.head = nn.Linear(dim, vocab)
            self.register_buffer("position", torch.arange(64, dtype=torch.float32))

        def get_input_embeddings(self):
            return self.wte

        def forward(self, inputs_embeds):
            return self.head(self.block(inputs_embeds))

    torch.manual_seed(seed)
    return Tiny()


def trainable_parameters_call(ns: dict, inputs: dict) -> dict:
    """``trainable_parameters(model, prompt)`` on a small model whose parameters all
    require grad; then one backward pass of ``model(embed(ids) + ...)`` plus the prompt's
    own term. Reports what was returned (by identity) and where gradients went."""
    import torch

    model = _tiny_lm(inputs["vocab"], inputs["dim"], int(inputs["seed"]))
    model.train()
    prompt = torch.nn.Parameter(torch.tensor(inputs["prompt"], dtype=torch.float32))
    named = dict(model.named_parameters())
    values = {k: p.detach().clone() for k, p in named.items()}
    prompt_before = prompt.detach().clone()
    fn = lookup(ns, "trainable_parameters")
    for _ in range(int(inputs.get("calls", 1))):
        out = fn(model, prompt)
    try:
        returned = list(out)
    except TypeError:
        raise ProbeError("trainable_parameters should return the parameters to give the optimizer "
                         f"(a list), but it returned a {type(out).__name__}.") from None
    ids = {id(p): k for k, p in named.items()}
    report = {
        "n_returned": len(returned),
        "has_prompt": any(r is prompt for r in returned),
        "model_returned": sorted(ids[id(r)] for r in returned if id(r) in ids),
        "others": sum(1 for r in returned if r is not prompt and id(r) not in ids),
        "still_trainable": sorted(k for k, p in named.items() if p.requires_grad),
        "prompt_requires_grad": bool(prompt.requires_grad),
        "values_kept": all(torch.equal(values[k], p.detach()) for k, p in named.items())
        and torch.equal(prompt_before, prompt.detach()),
        "training_mode": bool(model.training),
    }
    ids_t = torch.tensor(inputs["ids"], dtype=torch.long)
    embeds = model.get_input_embeddings()(ids_t) + prompt.mean(0)  # the prompt reaches every position
    logits = model(inputs_embeds=embeds)
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                             torch.zeros(logits.shape[0] * logits.shape[1], dtype=torch.long))
    if loss.requires_grad:  # nothing requires grad when the prompt was frozen too
        loss.backward()
    report["grad_to_prompt"] = prompt.grad is not None and bool(prompt.grad.abs().sum() > 0)
    report["grad_to_model"] = sorted(k for k, p in named.items() if p.grad is not None)
    return report
