"""The notebook's playground helpers: connect, sample, compare, score and plot. Students run
them and change their arguments; none of them is graded.
"""
from __future__ import annotations

import math
import os
from collections import Counter

from .client import LM, LMUnavailable, settings_from_env
from .data import MissingData

LETTERS = "ABCDE"


# ------------------------------------------------------------------ connecting
class playground:
    """``with playground("The temperature demo"):`` around a demo cell: a function not
    filled in yet says so in one line (``Unfinished``); a model that cannot be reached, a
    missing data file or a missing package prints one line saying what to set, and the
    notebook goes on."""

    def __init__(self, what: str):
        self.what = what

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if kind is None:
            return False
        if issubclass(kind, NotImplementedError):
            from ..unfinished import Unfinished, unfinished_name
            raise Unfinished(unfinished_name(exc.with_traceback(tb)), self.what) from None
        if issubclass(kind, (LMUnavailable, MissingData)):
            print(f"\u26a0 {self.what} skipped: {exc}")
            return True
        if issubclass(kind, NameError) and tb is not None and tb.tb_next is None:
            # a name this cell reads was never defined because an earlier cell was skipped
            print(f"\u26a0 {self.what} skipped: {exc} (an earlier cell was skipped or not run)")
            return True
        if issubclass(kind, ModuleNotFoundError):
            print(f"\u26a0 {self.what} skipped: the package {exc.name!r} is missing (pip install {exc.name})")
            return True
        return False


def connect(settings=None, env=None) -> LM:
    """The notebook's LM. With HW10_LLM_BASE_URL or an API key set, that provider. With
    neither, a tiny GPT-2 with random weights served here in the background (no download),
    so that every cell runs: its outputs are gibberish and are labelled so."""
    env = os.environ if env is None else env
    settings = settings or settings_from_env(env)
    if settings.base_url is None and not settings.api_key and env.get("HW10_LLM", "auto") == "auto":
        from .server import TINY, serve_in_background
        try:
            url, _ = serve_in_background((TINY,))
        except (ModuleNotFoundError, MissingData) as exc:
            print(f"\u26a0 No language model configured, and the offline tiny model cannot start ({exc}). Set "
                  "OPENAI_API_KEY, or HW10_LLM_BASE_URL and HW10_LLM_API_KEY; the model cells will say so.")
            return LM(settings)
        from dataclasses import replace
        settings = replace(settings, base_url=url, api_key="EMPTY", large=TINY, small=TINY, api="completions",
                           cache_dir=os.path.join(settings.cache_dir, "tiny"),
                           label="OFFLINE DEMO: a tiny GPT-2 with random weights, outputs are meaningless")
        print("\u26a0 No API key and no HW10_LLM_BASE_URL: using a tiny GPT-2 with RANDOM weights, served here "
              f"at {url}.\n  Its outputs are gibberish; they only show that the cells run. For real answers set "
              "OPENAI_API_KEY, or HW10_LLM_BASE_URL (+ HW10_LLM_API_KEY) for another provider, or start\n"
              "  `python -m hw10kit.prompting.server` (GPT-2) and set HW10_LLM_BASE_URL=http://127.0.0.1:8000/v1.")
    return LM(settings)


def offline(lm: LM) -> bool:
    """True when no provider is configured: the notebook runs on the offline tiny model (or
    on nothing, when even that could not start)."""
    return bool(lm.settings.label) or (lm.settings.base_url is None and not lm.settings.api_key)


def load_gpt2(name=None, lm: LM | None = None):
    """``(model, tokenizer)`` for the soft-prompt part: ``name`` (default ``$HW10_GPT2`` or
    "gpt2") from the local Hugging Face cache, else from the hub; in offline-demo mode
    (``lm`` on the tiny model) or with ``name="tiny"``, the tiny random GPT-2."""
    from .server import TINY, load_model, tiny_gpt2

    name = name or os.environ.get("HW10_GPT2", "gpt2")
    if name in ("tiny", TINY):
        return tiny_gpt2()
    from transformers import AutoModelForCausalLM, AutoTokenizer
    try:
        return (AutoModelForCausalLM.from_pretrained(name, local_files_only=True).eval(),
                AutoTokenizer.from_pretrained(name, local_files_only=True))
    except OSError:
        if lm is not None and offline(lm):
            print(f"\u26a0 {name} is not in the local Hugging Face cache and no provider is configured: using the "
                  "tiny RANDOM GPT-2 (numbers below mean nothing; set HW10_GPT2 or run on a networked machine).")
            return tiny_gpt2()
        return load_model(name)


def label(lm: LM) -> str:
    return f" [{lm.settings.label}]" if lm.settings.label else ""


# ------------------------------------------------------------------ part (a)
def show(text: str) -> str:
    return repr(text)[1:-1]


def ask(lm: LM, prompt: str, model=None, max_tokens=40, temperature=0.0, **kw) -> str:
    out = lm.complete(prompt, model=model or lm.large, max_tokens=max_tokens, temperature=temperature, **kw)
    print(f"[{model or lm.large}{label(lm)}] {show(prompt[-60:])} \u2192 {show(out.text)}")
    return out.text


def temperature_demo(lm: LM, prompt: str, temperatures=(0.0, 0.7, 1.0, 1.5), n=20, max_tokens=1, model=None):
    """``n`` samples of ``prompt`` at each temperature; a bar chart of the first tokens."""
    import matplotlib.pyplot as plt

    model = model or lm.large
    fig, axes = plt.subplots(1, len(temperatures), figsize=(4 * len(temperatures), 3.2), squeeze=False)
    for ax, t in zip(axes[0], temperatures):
        outs = lm.sample(prompt, n, model=model, max_tokens=max_tokens, temperature=t)
        counts = Counter(show(o.text) for o in outs).most_common(8)
        ax.barh([c[0] for c in counts][::-1], [c[1] for c in counts][::-1])
        ax.set_title(f"T = {t:g}: {len(dict(counts))}+ distinct / {n}")
    fig.suptitle(f"{model}{label(lm)}: {show(prompt[-50:])}")
    fig.tight_layout()
    plt.show()


def side_by_side(lm: LM, prompts, models=None, max_tokens=30):
    models = models or (lm.small, lm.large)
    for p in prompts:
        print(f"\u2500\u2500 {show(p)}")
        for m in models:
            out = lm.complete(p, model=m, max_tokens=max_tokens, temperature=0.0)
            print(f"   {m:>20}: {show(out.text)}")
    if label(lm):
        print(label(lm))


def chi_square_uniform(counts) -> tuple:
    """(statistic, p-value) of Pearson's chi-square test of uniformity over the cells."""
    import torch

    counts = [float(c) for c in counts]
    n, k = sum(counts), len(counts)
    expected = n / k
    stat = sum((c - expected) ** 2 / expected for c in counts)
    p = float(torch.special.gammaincc(torch.tensor((k - 1) / 2, dtype=torch.float64),
                                      torch.tensor(stat / 2, dtype=torch.float64)))
    return stat, p


def random_digits(lm: LM, prompt="Pick a random digit from 0 to 9, uniformly at random. Digit:", n=100,
                  model=None, temperature=1.0):
    """``n`` samples; the histogram of the digits; the chi-square test of uniformity."""
    import matplotlib.pyplot as plt

    outs = lm.sample(prompt, n, model=model or lm.large, max_tokens=2, temperature=temperature)
    digits = [next((ch for ch in o.text if ch.isdigit()), None) for o in outs]
    counts = [sum(d == str(i) for d in digits) for i in range(10)]
    valid = sum(counts)
    stat, p = chi_square_uniform(counts) if valid else (float("nan"), float("nan"))
    plt.figure(figsize=(5, 2.8))
    plt.bar(range(10), counts)
    if valid:
        plt.axhline(valid / 10, color="k", ls="--", lw=1, label="uniform")
        plt.legend()
    plt.xticks(range(10))
    plt.title(f"{model or lm.large}{label(lm)}: {valid}/{n} digits; chi2 = {stat:.1f}, p = {p:.2g}")
    plt.tight_layout()
    plt.show()
    return {"counts": counts, "valid": valid, "chi2": stat, "p": p}


def alternatives(lm: LM, prompt: str, model=None, max_tokens=5, top=5):
    """Each generated token with the top alternatives the model considered, as probabilities."""
    out = lm.complete(prompt, model=model or lm.large, max_tokens=max_tokens, temperature=0.0, top_logprobs=top)
    print(f"{model or lm.large}{label(lm)}: {show(prompt[-50:])} \u2192 {show(out.text)}")
    for i, (token, alts) in enumerate(zip(out.tokens, out.top_logprobs)):
        ranked = sorted(alts.items(), key=lambda kv: -kv[1])
        shown = ", ".join(f"{show(t)!r}: {math.exp(v):.3f}" for t, v in ranked)
        print(f"  {i}: {show(token)!r:>12} | {shown}")
    return out


# ------------------------------------------------------------------ part (b): multiple choice
def wilson(k: int, n: int, z: float = 1.96) -> tuple:
    """The Wilson score interval for k successes in n trials (95% by default)."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def score_multiple_choice(lm: LM, items, prompts, parse_answer, choice_probabilities, model=None) -> list:
    """One record per question: the answer read from the text (``parse_answer``), whether
    it is valid and correct, and from the first token's top log-probabilities
    (``choice_probabilities``) the probability of the chosen and of the correct letter."""
    outs = lm.complete_many(prompts, model=model or lm.large, max_tokens=5, temperature=0.0, top_logprobs=20)
    records = []
    for item, out in zip(items, outs):
        probs = [float(x) for x in choice_probabilities(out.first_top)]
        chosen = parse_answer(out.text)
        correct = item["answerKey"]
        records.append({"text": out.text, "chosen": chosen, "valid": chosen is not None,
                        "correct": chosen == correct,
                        "p_chosen": probs[LETTERS.index(chosen)] if chosen and chosen in LETTERS else float("nan"),
                        "p_correct": probs[LETTERS.index(correct)], "argmax": LETTERS[probs.index(max(probs))]
                        if max(probs) > 0 else None})
    return records


def summarise(records) -> dict:
    n = len(records)
    k = sum(r["correct"] for r in records)
    v = sum(r["valid"] for r in records)
    by = lambda flag, key: [r[key] for r in records if r["correct"] == flag and not math.isnan(r[key])]  # noqa
    mean = lambda xs: sum(xs) / len(xs) if xs else float("nan")  # noqa: E731
    return {"n": n, "accuracy": k / n if n else float("nan"), "accuracy_ci": wilson(k, n),
            "valid": v / n if n else float("nan"), "valid_ci": wilson(v, n),
            "p_chosen_correct": mean(by(True, "p_chosen")), "p_chosen_wrong": mean(by(False, "p_chosen")),
            "p_correct_correct": mean(by(True, "p_correct")), "p_correct_wrong": mean(by(False, "p_correct"))}


def print_summary(results: dict):
    print(f"{'format':<28}{'n':>5}{'accuracy (95% CI)':>26}{'valid (95% CI)':>26}")
    for name, recs in results.items():
        s = summarise(recs)
        acc = f"{s['accuracy']:.1%} [{s['accuracy_ci'][0]:.1%}, {s['accuracy_ci'][1]:.1%}]"
        val = f"{s['valid']:.1%} [{s['valid_ci'][0]:.1%}, {s['valid_ci'][1]:.1%}]"
        print(f"{name:<28}{s['n']:>5}{acc:>26}{val:>26}")


def plot_multiple_choice(results: dict, title=""):
    """Accuracy and valid-answer rate with 95% intervals per format; the probability of the
    chosen and of the correct letter, for correct vs incorrect answers."""
    import matplotlib.pyplot as plt
    import numpy as np

    names = list(results)
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    for ax, key, what in ((axes[0], "accuracy", "accuracy"), (axes[0], "valid", "valid answers")):
        s = [summarise(results[n]) for n in names]
        x = np.arange(len(names)) + (0.2 if key == "valid" else -0.2)
        y = np.array([t[key] for t in s])
        lo = np.array([t[key + "_ci"][0] for t in s])
        hi = np.array([t[key + "_ci"][1] for t in s])
        ax.bar(x, y, 0.4, yerr=[y - lo, hi - y], capsize=3, label=what)
    axes[0].axhline(0.2, color="k", ls=":", lw=1, label="chance")
    axes[0].set_xticks(range(len(names)), names, rotation=20, ha="right")
    axes[0].set_ylim(0, 1)
    axes[0].legend()
    axes[0].set_title("accuracy and valid answers (95% Wilson CI)")
    for ax, key in ((axes[1], "p_chosen"), (axes[2], "p_correct")):
        data, labels = [], []
        for n in names:
            for flag, tag in ((True, "right"), (False, "wrong")):
                xs = [r[key] for r in results[n] if r["correct"] == flag and not math.isnan(r[key])]
                data.append(xs or [float("nan")])
                labels.append(f"{n}\n{tag}")
        ax.boxplot(data, showfliers=False)
        ax.set_xticks(range(1, len(labels) + 1), labels, rotation=45, ha="right", fontsize=7)
        ax.set_ylim(0, 1)
        ax.set_title(f"P({'chosen' if key == 'p_chosen' else 'correct'} letter), right vs wrong answers")
    fig.suptitle(title)
    fig.tight_layout()
    plt.show()


# ------------------------------------------------------------------ part (b): soft prompts
def plot_soft_vs_hard(history: dict, hard: dict, soft_test=None, title=""):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    axes[0].plot(history["epoch"], history["val_accuracy"], marker=".", label="soft prompt, validation")
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("accuracy")
    axes[0].set_ylim(0, 1)
    axes[0].legend()
    axes[0].set_title(f"soft prompt (lr {history['lr']:g})")
    ks = sorted(hard)
    axes[1].plot(ks, [hard[k]["accuracy"] for k in ks], marker="o", label="hard prompt (k shots)")
    if soft_test is not None:
        axes[1].axhline(soft_test, color="C1", ls="--", label="soft prompt")
    axes[1].set_xlabel("k (shots in the prompt)")
    axes[1].set_ylim(0, 1)
    axes[1].legend()
    axes[1].set_title("hard prompts vs k")
    fig.suptitle(title)
    fig.tight_layout()
    plt.show()
