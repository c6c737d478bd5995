"""Public checks for Problem 1 (prompting). The grader runs these and its hidden checks.

The prompt format, the answer parser's rules and the probability rule are the notebook's
(its Q1(b) text states them). The expected values come from the judge
(``hw10grader.hidden.prompting.REFERENCES``); in a notebook, from the values the build
stored on these checks' fixed inputs. This module holds the input designs and the
comparisons only: no correct implementation of a graded function.
"""
from __future__ import annotations

import re

import numpy as np

from . import prompting_probes as probes
from .core import Check, expected_verdict

NOTEBOOK, KEYWORD = "hw10_prompting.ipynb", "prompting"
Q1B = "Q1(b)"
BUILD, PARSE, PROBS, PREPEND, TRAINABLE = ("build_prompt", "parse_answer", "choice_probabilities",
                                           "prepend_soft_prompt", "trainable_parameters")
LETTERS = "ABCDE"
INSTRUCTION = "Answer each question with the letter of the correct choice."

WORDS = ("river", "lamp", "garden", "violin", "teacher", "bottle", "winter", "market", "pencil", "island",
         "doctor", "window", "castle", "basket", "forest", "rabbit", "engine", "letter", "mirror", "planet",
         "kitchen", "ticket", "bridge", "candle", "jacket", "office", "orange", "pocket", "school", "tunnel")


# ------------------------------------------------------------------ input designs
def make_item(rng: np.random.Generator, n_choices: int = 5) -> dict:
    """A CommonsenseQA-shaped question made of random words (answer key random)."""
    words = [str(w) for w in rng.choice(WORDS, size=4 + n_choices, replace=True)]
    question = f"Where would you put a {words[0]} next to the {words[1]} before the {words[2]} {words[3]}?"
    labels = list(LETTERS[:n_choices])
    texts = [f"{w} {i}" if i % 3 == 2 else w for i, w in enumerate(words[4:])]
    return {"question": question, "choices": {"label": labels, "text": texts},
            "answerKey": labels[int(rng.integers(n_choices))]}


def prompt_design(n_shots=0, instruction="", wrong_labels=False, seeds=(0,)):
    def make(rng):
        return {"item": make_item(rng), "shots": [make_item(rng) for _ in range(n_shots)],
                "instruction": instruction, "wrong_labels": wrong_labels, "seeds": list(seeds)}
    return make


#: What parse_answer must read (the notebook's rules) and the invalid texts it must refuse.
PARSE_START = [" B", "B.", "C", "  D) a bowl", "E, because it is wet", "(A)", "A."]
PARSE_LOWER = ["(b)", " (c) the river", "d) kitchen", "e."]
PARSE_PHRASE = ["The answer is B", "The answer is (d).", "Answer: C", "I think the answer is E"]
PARSE_INVALID = ["", "   ", "Both are fine", "I don't know", "Apple", "F.", "\n\nQuestion:", " a cat"]


def parse_design(texts):
    return lambda rng: {"texts": list(texts)}


def tops_design(kind: str):
    """Top-logprob dicts as an API returns them for the first generated token."""
    def make(rng):
        tops = []
        for _ in range(4):
            lp = lambda: float(rng.uniform(-6.0, -0.2))  # noqa: E731
            if kind == "merge":      # every letter, with and without a space, among other tokens
                top = {**{" " + k: lp() for k in LETTERS}, **{k: lp() for k in LETTERS},
                       "\n": lp(), " The": lp(), " the": lp()}
            elif kind == "missing":  # some letters absent (D and E, or a random two)
                gone = set(rng.choice(list(LETTERS), size=2, replace=False)) if tops else {"D", "E"}
                top = {**{" " + k: lp() for k in LETTERS if k not in gone}, "\n": lp(), '"': lp()}
                if "A" not in gone:
                    top["A"] = lp()
            elif kind == "none":     # no letter at all: a free-text answer
                top = {" The": lp(), "\n": lp(), " I": lp(), '"': lp(), " the": lp()}
            elif kind == "extreme":  # an API reports -9999 for tokens it considers impossible
                top = {" A": -9999.0 + 0.25 * int(rng.integers(0, 8)), "B": -9999.5, " C": -9998.75, "\n": -0.0078125}
            elif kind == "other":    # look-alikes that are not answers
                top = {" A": lp(), " a": lp(), "a": lp(), " B": lp(), " A.": lp(), "(A": lp(), " E": lp(),
                       "AB": lp(), " F": lp()}
            else:
                raise ValueError(kind)
            tops.append(top)
        return {"tops": tops}
    return make


def soft_design(batch=3, n=4, length=5, dim=6, vocab=11, left_pad=True, dtype="float32"):
    """A soft prompt (n, dim), an embedding table, token ids and a padded mask."""
    def make(rng):
        mask = np.ones((batch, length), np.int64)
        if left_pad and batch > 1:
            mask[1, :2] = 0
            mask[-1, :1] = 0
        return {"prompt": rng.normal(0, 1, (n, dim)).astype(np.float32),
                "table": rng.normal(0, 1, (vocab, dim)).astype(np.float32),
                "ids": rng.integers(0, vocab, (batch, length)).astype(np.int64), "mask": mask,
                "weights": rng.normal(0, 1, (batch, n + length, dim)).astype(np.float32), "dtype": dtype}
    return make


def trainable_design(calls=1):
    def make(rng):
        return {"vocab": 13, "dim": 6, "seed": int(rng.integers(1 << 30)), "calls": calls,
                "prompt": rng.normal(0, 1, (3, 6)).astype(np.float32),
                "ids": rng.integers(0, 13, (2, 4)).astype(np.int64)}
    return make


# ------------------------------------------------------------------ comparisons
def _first_difference(got: str, want: str) -> str:
    g, w = got.split("\n"), want.split("\n")
    for i, (a, b) in enumerate(zip(g, w)):
        if a != b:
            return f"line {i + 1} reads {a!r}, expected {b!r}"
    if len(g) != len(w):
        extra = g[len(w):] if len(g) > len(w) else w[len(g):]
        which = "has extra lines" if len(g) > len(w) else "is missing lines"
        return f"the prompt {which} at the end ({len(g)} lines, expected {len(w)}): {extra[:3]!r}"
    return "the prompts differ only in invisible characters (spaces, tabs, \\r)"


def prompt_verdict(what: str):
    def verdict(inputs, out):
        expected = inputs["expected"]
        got = out["prompts"][0]
        if got == expected["value"]:
            return True, f"{what}: the prompt is exactly the notebook's format"
        hint = next((m["hint"] for m in expected["mistakes"] if got == m["value"]), None)
        return False, f"{what}: {_first_difference(got, expected['value'])}" + (f": {hint}" if hint else "")
    return verdict


SHOT_ANSWER = re.compile(r"^Answer: ([A-E])$")


def wrong_labels_verdict(inputs, out):
    """Each prompt (one per seed) is the few-shot prompt with every shot's answer letter
    replaced by another of its choices: same lines otherwise, never the true letter."""
    want = inputs["expected"]["value"].split("\n")
    shot_lines = [i for i, line in enumerate(want) if SHOT_ANSWER.match(line)]
    for seed, prompt in zip(inputs["seeds"], out["prompts"]):
        got = prompt.split("\n")
        if len(got) != len(want):
            return False, (f"with wrong_labels=True (seed {seed}) the format changed: "
                           f"{_first_difference(prompt, inputs['expected']['value'])}. Only the shots' answer "
                           "letters may change; everything else is the few-shot prompt")
        for i, (a, b) in enumerate(zip(got, want)):
            if i in shot_lines:
                m = SHOT_ANSWER.match(a)
                true = SHOT_ANSWER.match(b).group(1)
                if not m:
                    return False, (f"with wrong_labels=True (seed {seed}) line {i + 1} reads {a!r}: a shot's answer "
                                   f"line must keep the format 'Answer: <letter>', with a wrong letter")
                if m.group(1) == true:
                    return False, (f"with wrong_labels=True (seed {seed}) a shot keeps its true answer "
                                   f"{true!r} (line {i + 1}): every shot must show a letter other than its "
                                   "answerKey, chosen among its other choices")
            elif a != b:
                return False, (f"with wrong_labels=True (seed {seed}) line {i + 1} reads {a!r}, expected {b!r}: "
                               "the format changed. Only the shots' answer letters may change")
    return True, (f"every shot shows a wrong letter and nothing else changes ({len(out['prompts'])} seeds, "
                  f"{len(shot_lines)} shots)")


def parse_verdict(inputs, out):
    want = inputs["expected"]["value"]
    for text, got, kind, expected in zip(inputs["texts"], out["answers"], out["types"], want):
        if got == expected:
            continue
        said = f"parse_answer({text!r}) returned {got!r}, expected {expected!r}"
        if expected is None and got == "":
            return False, said + ": return None (not an empty string) when there is no valid answer"
        if isinstance(got, str) and expected is not None and got.upper() == expected:
            return False, said + ": return the capital letter, whatever the case in the text"
        if kind not in ("str", "NoneType"):
            return False, said + ": return a capital letter 'A' to 'E' as a str, or None"
        return False, said
    return True, f"all {len(want)} texts are read as the notebook's rules say"


def probs_verdict(what: str):
    def verdict(inputs, out):
        return expected_verdict(out["probs"], inputs["expected"], what=what,
                                formula="P(letter) over A-E, ' A' and 'A' merged, renormalised")
    return verdict


def _shape_message(got, want, batch, what, fix):
    if list(got) == list(want):
        return None
    extra = (": a batch of one example keeps its batch dimension (avoid .squeeze(), which drops it)"
             if batch == 1 and len(got) == len(want) - 1 else (f": {fix}" if fix else ""))
    return f"{what} has shape {tuple(got)}, expected {tuple(want)}" + extra


def soft_shapes_verdict(inputs, out):
    batch, length = inputs["ids"].shape
    n, dim = inputs["prompt"].shape
    problems = [p for p in (
        _shape_message(np.shape(out["embeds"]), (batch, n + length, dim), batch, "inputs_embeds",
                       "the n prompt vectors come first, then the L token embeddings, for every example"),
        _shape_message(np.shape(out["mask"]), (batch, n + length), batch, "the attention mask",
                       "extend the mask over the n prompt positions (ones), or the model ignores or "
                       "misaligns them")) if p]
    if problems:
        return False, "; ".join(problems)
    return True, f"inputs_embeds {(batch, n + length, dim)} and mask {(batch, n + length)}"


def soft_value_verdict(key: str, what: str, formula: str):
    def verdict(inputs, out):
        if not out.get("inputs_unchanged", True):
            return False, ("prepend_soft_prompt changed its inputs (the prompt, the ids or the mask) in place: "
                           "build new tensors with torch.cat")
        return expected_verdict(out[key], inputs["expected"], what=what, formula=formula)
    return verdict


def soft_grad_verdict(inputs, out):
    if out["grad"] is None:
        reason = out.get("grad_error") or "the prompt's .grad is None after backward"
        return False, (f"no gradient reaches the prompt ({reason}): use the Parameter itself "
                       "(prompt.unsqueeze(0).expand(B, -1, -1)), not prompt.data, prompt.detach(), "
                       "torch.tensor(prompt) or a copy made under torch.no_grad()")
    return expected_verdict(out["grad"], inputs["expected"], what="the prompt's gradient",
                            formula="sum over the batch of d loss / d inputs_embeds[:, :n]")


def soft_batch_of_one(inputs, out):
    ok, message = soft_shapes_verdict(inputs, out)
    if not ok:
        return ok, message
    return soft_value_verdict("embeds", "inputs_embeds", "[prompt; embedding(input_ids)]")(inputs, out)


def returns_only_the_prompt(inputs, out):
    if not out["has_prompt"]:
        return False, ("the list does not hold the prompt Parameter itself: return [prompt] "
                       "(a copy, or prompt.data, is not what the forward pass uses)")
    if out["model_returned"]:
        return False, (f"it returns {len(out['model_returned'])} of the model's parameters too "
                       f"({', '.join(out['model_returned'][:3])}...): GPT-2 stays frozen, only the prompt trains")
    if out["n_returned"] != 1:
        return False, f"it returns {out['n_returned']} items; return [prompt], the only parameter to train"
    return True, "returns [prompt]"


def freezes_the_model(inputs, out):
    if out["still_trainable"]:
        return False, (f"{len(out['still_trainable'])} of the model's parameters still require grad "
                       f"({', '.join(out['still_trainable'][:3])}): call p.requires_grad_(False) on every "
                       "model.parameters(), or a backward pass computes (and wastes memory on) their gradients")
    if out["grad_to_model"]:
        return False, f"gradients reach the model's {', '.join(out['grad_to_model'][:3])}: freeze every weight"
    return True, "every model parameter is frozen and receives no gradient"


def prompt_still_learns(inputs, out):
    if not out["prompt_requires_grad"]:
        return False, "the prompt no longer requires grad: freeze the model's parameters, not the prompt"
    if not out["grad_to_prompt"]:
        return False, "no gradient reaches the prompt after a backward pass"
    if not out["values_kept"]:
        return False, "the model's or the prompt's values changed: choose the parameters, do not modify them"
    return True, "the prompt still requires grad and receives one; no value changed"


PUBLIC = [
    Check(Q1B, BUILD, "zero-shot prompt", 0.5, prompt_design(), probes.build_prompt_call,
          prompt_verdict("zero-shot"), reference="prompt_exact"),
    Check(Q1B, BUILD, "zero-shot prompt with an instruction", 0.5, prompt_design(instruction=INSTRUCTION),
          probes.build_prompt_call, prompt_verdict("with an instruction"), reference="prompt_exact"),
    Check(Q1B, BUILD, "4-shot prompt", 0.75, prompt_design(4), probes.build_prompt_call,
          prompt_verdict("4-shot"), reference="prompt_exact"),
    Check(Q1B, BUILD, "4-shot prompt with wrong labels", 0.75,
          prompt_design(4, wrong_labels=True, seeds=(0, 1, 2)), probes.build_prompt_call, wrong_labels_verdict,
          reference="prompt_right_labels"),
    Check(Q1B, PARSE, "a letter at the start", 0.5, parse_design(PARSE_START), probes.parse_answer_call,
          parse_verdict, reference="parsed"),
    Check(Q1B, PARSE, "lower-case letters in brackets: (b), b)", 0.25, parse_design(PARSE_LOWER),
          probes.parse_answer_call, parse_verdict, reference="parsed"),
    Check(Q1B, PARSE, "'The answer is B'", 0.25, parse_design(PARSE_PHRASE), probes.parse_answer_call,
          parse_verdict, reference="parsed"),
    Check(Q1B, PARSE, "invalid text gives None", 0.5, parse_design(PARSE_INVALID), probes.parse_answer_call,
          parse_verdict, reference="parsed"),
    Check(Q1B, PROBS, "' A' and 'A' merged, renormalised over A-E", 0.75, tops_design("merge"),
          probes.choice_probabilities_call, probs_verdict("choice_probabilities"), reference="choice_probs"),
    Check(Q1B, PROBS, "missing letters get 0", 0.5, tops_design("missing"), probes.choice_probabilities_call,
          probs_verdict("choice_probabilities"), reference="choice_probs"),
    Check(Q1B, PROBS, "no letter at all gives zeros", 0.25, tops_design("none"),
          probes.choice_probabilities_call, probs_verdict("choice_probabilities"), reference="choice_probs"),
    Check(Q1B, PROBS, "log-probabilities near -9999", 0.25, tops_design("extreme"),
          probes.choice_probabilities_call, probs_verdict("choice_probabilities"), reference="choice_probs"),
    Check(Q1B, PREPEND, "shapes: n prompt positions added", 0.5, soft_design(), probes.prepend_soft_prompt_call,
          soft_shapes_verdict),
    Check(Q1B, PREPEND, "inputs_embeds: the prompt, then the tokens", 0.75, soft_design(),
          probes.prepend_soft_prompt_call,
          soft_value_verdict("embeds", "inputs_embeds", "[prompt; embedding(input_ids)] for every example"),
          reference="soft_embeds"),
    Check(Q1B, PREPEND, "attention mask extended over the prompt", 0.5, soft_design(),
          probes.prepend_soft_prompt_call,
          soft_value_verdict("mask", "the attention mask", "[ones(n); attention_mask] for every example"),
          reference="soft_mask"),
    Check(Q1B, PREPEND, "the gradient reaches the prompt", 0.5, soft_design(), probes.prepend_soft_prompt_call,
          soft_grad_verdict, reference="soft_grad"),
    Check(Q1B, PREPEND, "a batch of one example", 0.5, soft_design(batch=1), probes.prepend_soft_prompt_call,
          soft_batch_of_one, reference="soft_embeds"),
    Check(Q1B, TRAINABLE, "returns the prompt and nothing else", 0.4, trainable_design(),
          probes.trainable_parameters_call, returns_only_the_prompt),
    Check(Q1B, TRAINABLE, "freezes every weight of the model", 0.2, trainable_design(),
          probes.trainable_parameters_call, freezes_the_model),
    Check(Q1B, TRAINABLE, "the prompt still learns; values unchanged", 0.2, trainable_design(),
          probes.trainable_parameters_call, prompt_still_learns),
]
