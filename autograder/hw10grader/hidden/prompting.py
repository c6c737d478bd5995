"""Hidden checks and the references for Problem 1 (prompting). Judge side only: the prompt
builder, the answer parser, the choice probabilities and the soft-prompt concatenation
below are what the problem asks students to write, so they never enter the kit (the
notebook's public checks read the values the build stored) nor the sandbox.
"""
from __future__ import annotations

import random
import re

import numpy as np
from hw10kit.checks import prompting_probes as probes
from hw10kit.checks.core import Check, Mistake, expectation
from hw10kit.checks.prompting import (BUILD, INSTRUCTION, LETTERS, PARSE, PREPEND, PROBS, Q1B, TRAINABLE, freezes_the_model,
                                      make_item, parse_verdict, probs_verdict, prompt_design, prompt_verdict,
                                      returns_only_the_prompt, soft_design,
                                      soft_value_verdict, tops_design, trainable_design, wrong_labels_verdict)


# ------------------------------------------------------------------ the notebook's format
def question_block(item: dict, answer: str | None = None, choice_fmt="{}. {}", answer_fmt="Answer: {}",
                   tail="Answer:") -> str:
    lines = [f"Question: {item['question']}"]
    lines += [choice_fmt.format(label, text) for label, text in zip(item["choices"]["label"], item["choices"]["text"])]
    lines.append(answer_fmt.format(answer) if answer is not None else tail)
    return "\n".join(lines)


def prompt_text(item, shots=(), instruction="", wrong_labels=False, seed=0, sep="\n\n", **fmt) -> str:
    rng = random.Random(seed)
    parts = [instruction] if instruction else []
    for shot in shots:
        answer = shot["answerKey"]
        if wrong_labels:
            answer = rng.choice([c for c in shot["choices"]["label"] if c != answer])
        parts.append(question_block(shot, answer, **fmt))
    parts.append(question_block(item, **fmt))
    return sep.join(parts)


def prompt_exact_expected(inputs) -> dict:
    item, shots, instruction = inputs["item"], list(inputs["shots"]), inputs["instruction"]
    want = prompt_text(item, shots, instruction)
    wrongs = [
        Mistake(want + " ", "the prompt ends with 'Answer: ' (a trailing space): end it with 'Answer:', so that "
                            "the model's first token is ' B' (space and letter), the way the shots read"),
        Mistake(prompt_text(item, shots, instruction, sep="\n"), "separate the instruction and the question blocks "
                                                                 "by one blank line ('\\n\\n')"),
        Mistake(prompt_text(item, shots, instruction, choice_fmt="{}) {}"), "write each choice as 'A. text'"),
        Mistake(prompt_text(item, shots, instruction, choice_fmt="({}) {}"), "write each choice as 'A. text'"),
        Mistake(want + " " + item["answerKey"], "the prompt gives away the answer of the question asked: it ends "
                                                "with 'Answer:' and nothing after it"),
        Mistake(prompt_text(item, shots, instruction, tail="Answer: "), "the prompt ends with 'Answer: ' (a trailing "
                                                                         "space): end it with 'Answer:'"),
    ]
    if shots:
        wrongs += [
            Mistake(prompt_text(item, shots, instruction, answer_fmt="Answer:"),
                    "the shots have no answers: each shot's block ends with 'Answer: <its letter>'"),
            Mistake(prompt_text(item, shots[::-1], instruction), "keep the shots in the order given"),
            Mistake(prompt_text(item, shots, instruction, answer_fmt="Answer: {}\n"),
                    "one blank line between blocks: a shot's answer line is followed by exactly '\\n\\n'"),
        ]
    if instruction:
        wrongs.append(Mistake(prompt_text(item, shots), "the instruction is missing: it comes first, then a blank line"))
        wrongs.append(Mistake(prompt_text(item, shots, instruction, sep="\n\n").replace(instruction + "\n\n", "")
                              + "\n\n" + instruction, "the instruction comes first, before any question"))
    return expectation(want, [m for m in wrongs if m.value != want])


def prompt_right_labels_expected(inputs) -> dict:
    """The few-shot prompt with the true labels (the wrong-label verdict compares with it)."""
    return expectation(prompt_text(inputs["item"], list(inputs["shots"]), inputs["instruction"]))


# ------------------------------------------------------------------ the answer parser
START = re.compile(r"\s*\(?([A-E])(?![A-Za-z])")
LOWER = re.compile(r"\s*(?:\(([a-e])\)|([a-e])[.)])(?![A-Za-z])")
PHRASE = re.compile(r"answer\s*(?:is|:)\s*\(?([A-Ea-e])(?![A-Za-z])", re.IGNORECASE)


def parse(text: str):
    for pattern in (START, LOWER, PHRASE):
        m = pattern.match(text) if pattern is not PHRASE else pattern.search(text)
        if m:
            return next(g for g in m.groups() if g).upper()
    return None


def parsed_expected(inputs) -> dict:
    return expectation([parse(t) for t in inputs["texts"]])


# ------------------------------------------------------------------ choice probabilities
def _letter_logprob(top, letter, spaced=True, bare=True, combine=np.logaddexp):
    found = [float(top[t]) for t in ((" " + letter) if spaced else None, letter if bare else None) if t in top]
    if not found:
        return -np.inf
    out = found[0]
    for v in found[1:]:
        out = combine(out, v)
    return out


def probs(top, spaced=True, bare=True, combine=np.logaddexp, renormalise=True, exp=True) -> np.ndarray:
    lp = np.array([_letter_logprob(top, k, spaced, bare, combine) for k in LETTERS], np.float64)
    if not np.isfinite(lp).any():
        return np.zeros(5)
    if not exp:
        v = np.where(np.isfinite(lp), lp, 0.0)
        return v / v.sum()
    p = np.exp(lp - (lp.max() if renormalise else 0.0))
    return p / p.sum() if renormalise else p


def choice_probs_expected(inputs) -> dict:
    tops = inputs["tops"]
    want = np.stack([probs(t) for t in tops])

    def rows(**kw):
        return np.stack([probs(t, **kw) for t in tops])

    mistakes = [
        Mistake(rows(renormalise=False), "not renormalised: divide by the total probability of A to E, so that the "
                                         "five numbers sum to 1"),
        Mistake(rows(bare=False), "only ' A' (with a space) counted: add the probability of 'A' without a space"),
        Mistake(rows(spaced=False), "only 'A' (no space) counted: after 'Answer:' the model writes ' A', with a "
                                    "space; add both"),
        Mistake(rows(combine=max), "' A' and 'A' merged with max: add their probabilities (exp, then sum)"),
        Mistake(rows(combine=lambda a, b: a + b), "' A' and 'A' merged by adding log-probabilities: add the "
                                                  "probabilities (exp, then sum), i.e. logaddexp"),
        Mistake(rows(exp=False), "log-probabilities were normalised as if they were probabilities: exponentiate "
                                 "first"),
        Mistake(np.full_like(want, 0.2), "uniform: read each letter's log-probability from the dict"),
    ]
    return expectation(want, [m for m in mistakes if m.value.shape == want.shape
                              and not np.allclose(m.value, want, rtol=1e-4, atol=1e-6)])


# ------------------------------------------------------------------ soft prompts
def _soft(inputs):
    prompt, table = np.asarray(inputs["prompt"], np.float64), np.asarray(inputs["table"], np.float64)
    ids, mask = np.asarray(inputs["ids"]), np.asarray(inputs["mask"])
    batch, n = ids.shape[0], prompt.shape[0]
    return prompt, table[ids], mask, batch, n


def soft_embeds_expected(inputs) -> dict:
    prompt, tokens, _, batch, n = _soft(inputs)
    tiled = np.broadcast_to(prompt, (batch, *prompt.shape))
    want = np.concatenate([tiled, tokens], axis=1)
    return expectation(want, [
        Mistake(np.concatenate([tokens, tiled], axis=1), "the prompt comes after the tokens: prepend it, "
                                                          "torch.cat([prompt, tokens], dim=1)"),
        Mistake(np.concatenate([np.zeros_like(tiled), tokens], axis=1), "zeros where the prompt belongs"),
    ])


def soft_mask_expected(inputs) -> dict:
    _, _, mask, batch, n = _soft(inputs)
    ones = np.ones((batch, n))
    want = np.concatenate([ones, mask], axis=1).astype(np.float64)
    return expectation(want, [
        Mistake(np.concatenate([np.zeros((batch, n)), mask], axis=1), "the mask is 0 over the prompt: the model "
                "would ignore the prompt. Prepend ones"),
        Mistake(np.concatenate([mask, ones], axis=1), "the ones are appended: the prompt comes first, so do its "
                                                      "ones"),
        Mistake(np.ones_like(want), "the padding is lost: keep the given mask's zeros after the prompt's ones"),
    ])


def soft_grad_expected(inputs) -> dict:
    n = np.shape(inputs["prompt"])[0]
    w = np.asarray(inputs["weights"], np.float64)
    want = w[:, :n].sum(axis=0)
    return expectation(want, [Mistake(w[0, :n], "the gradient reaches the prompt only through the first "
                                                "example: every example shares the same prompt"),
                              Mistake(w[:, -n:].sum(axis=0), "the prompt comes after the tokens: prepend it")])


REFERENCES = {"prompt_exact": prompt_exact_expected, "prompt_right_labels": prompt_right_labels_expected,
              "parsed": parsed_expected, "choice_probs": choice_probs_expected, "soft_embeds": soft_embeds_expected,
              "soft_mask": soft_mask_expected, "soft_grad": soft_grad_expected}


# ------------------------------------------------------------------ hidden checks
def with_reference(key, verdict):
    """A verdict that compares with REFERENCES[key] computed here, on the hidden inputs."""
    def check(inputs, out):
        return verdict({**inputs, "expected": REFERENCES[key](inputs)}, out)
    return check


def prompt_of_many(n_shots, instruction, n_choices):
    def make(rng):
        return {"item": make_item(rng, n_choices), "shots": [make_item(rng, n_choices) for _ in range(n_shots)],
                "instruction": instruction, "wrong_labels": False, "seeds": [0]}
    return make


def called_twice(inputs, out):
    ok, message = returns_only_the_prompt(inputs, out)
    return (ok, message) if not ok else freezes_the_model(inputs, out)


PARSE_MORE = [" E", "A", "(E) the lake", "c)", "The answer is a", "answer: (B)", "Answer:D", "\tC.", "B\n",
              "Bees", "Every morning", "None of these", "G", "(f)", "?", "answer", " D, E"]

HIDDEN = [
    Check(Q1B, BUILD, "8 shots with an instruction", 0.25, prompt_design(8, instruction="Pick the best answer."),
          probes.build_prompt_call, with_reference("prompt_exact", prompt_verdict("8-shot"))),
    Check(Q1B, BUILD, "one shot, three choices", 0.1, prompt_of_many(1, "", 3), probes.build_prompt_call,
          with_reference("prompt_exact", prompt_verdict("1-shot, 3 choices"))),
    Check(Q1B, BUILD, "wrong labels over 20 seeds, with an instruction", 0.15,
          prompt_design(3, instruction=INSTRUCTION, wrong_labels=True, seeds=range(20)), probes.build_prompt_call,
          with_reference("prompt_right_labels", wrong_labels_verdict)),
    Check(Q1B, PARSE, "more answers and non-answers", 0.5, lambda rng: {"texts": PARSE_MORE},
          probes.parse_answer_call, with_reference("parsed", parse_verdict)),
    Check(Q1B, PROBS, "look-alike tokens ignored", 0.25, tops_design("other"), probes.choice_probabilities_call,
          with_reference("choice_probs", probs_verdict("choice_probabilities"))),
    Check(Q1B, PREPEND, "another size, no padding, float64", 0.25,
          soft_design(batch=2, n=1, length=1, dim=9, vocab=5, left_pad=False, dtype="float64"),
          probes.prepend_soft_prompt_call, with_reference("soft_embeds", soft_value_verdict(
              "embeds", "inputs_embeds", "[prompt; embedding(input_ids)]"))),
    Check(Q1B, TRAINABLE, "called twice", 0.2, trainable_design(calls=2), probes.trainable_parameters_call,
          called_twice),
]
