"""Q1's checks as a specification: the solutions and other correct forms keep every point,
each mistake the notebook warns about fails a public check whose hint names it, and
degenerate answers fail every reference check. No model and no network: grading never
calls an API."""
import pytest
from check_helpers import failed, grade, public_titles, with_code
from hw10grader.assignment import QUESTIONS
from hw10kit.notebook import load_definitions

NOTEBOOK = "source/hw10/hw10_prompting.ipynb"
TARGETS = ("build_prompt", "parse_answer", "choice_probabilities", "prepend_soft_prompt", "trainable_parameters")


@pytest.fixture(scope="module")
def solution_ns():
    return load_definitions(NOTEBOOK)


def test_the_solution_keeps_every_point(solution_ns):
    for target in TARGETS:
        for seed in (1, 2, 3):
            assert failed(grade(solution_ns, target, seed)) == set(), (target, seed)


CORRECT = {
    "build_prompt_string_concatenation": ("build_prompt", '''
        def build_prompt(item, shots=(), instruction="", wrong_labels=False, seed=0):
            import random
            r = random.Random(seed)
            out = instruction + "\\n\\n" if instruction else ""
            for q in list(shots) + [item]:
                out += "Question: " + q["question"] + "\\n"
                for l, t in zip(q["choices"]["label"], q["choices"]["text"]):
                    out += l + ". " + t + "\\n"
                if q is item:
                    out += "Answer:"
                else:
                    a = q["answerKey"]
                    if wrong_labels:
                        a = r.choice(sorted(set(q["choices"]["label"]) - {a}))
                    out += "Answer: " + a + "\\n\\n"
            return out'''),
    "parse_answer_by_hand": ("parse_answer", '''
        def parse_answer(text):
            s = text.lstrip()
            if s[:1] == "(":
                s2 = s[1:]
                if s2[:1].upper() in "ABCDE" and s2[:1] and (s2[:1].isupper() or s2[1:2] == ")") \\
                        and not s2[1:2].isalpha():
                    return s2[0].upper()
            if s[:1] in list("ABCDE") and not s[1:2].isalpha():
                return s[0]
            if s[:1] in list("abcde") and s[1:2] in (".", ")") and not s[2:3].isalpha():
                return s[0].upper()
            m = re.search(r"answer\\s*(?:is|:)\\s*\\(?([a-e])(?![a-z])", text, re.I)
            return m.group(1).upper() if m else None'''),
    "choice_probabilities_numpy_dict": ("choice_probabilities", '''
        def choice_probabilities(top_logprobs):
            import numpy as np
            lp = np.array([np.logaddexp(top_logprobs.get(k, -np.inf), top_logprobs.get(" " + k, -np.inf))
                           for k in "ABCDE"])
            if np.isneginf(lp).all():
                return {k: 0.0 for k in "ABCDE"}
            p = np.exp(lp - lp.max())
            return dict(zip("ABCDE", p / p.sum()))'''),
    "prepend_with_repeat_and_float_mask": ("prepend_soft_prompt", '''
        def prepend_soft_prompt(prompt, embedding, input_ids, attention_mask):
            B = input_ids.size(0)
            soft = prompt[None].repeat(B, 1, 1)
            ones = torch.ones(B, prompt.size(0), dtype=attention_mask.dtype)
            return torch.cat((soft, embedding.weight[input_ids]), 1), torch.cat((ones, attention_mask), 1)'''),
    "trainable_via_requires_grad_attribute": ("trainable_parameters", '''
        def trainable_parameters(model, prompt):
            model.requires_grad_(False)
            return [prompt]'''),
}


@pytest.mark.parametrize("name", sorted(CORRECT))
def test_correct_forms_keep_every_point(solution_ns, name):
    target, code = CORRECT[name]
    assert failed(grade(with_code(solution_ns, code), target)) == set()


BP = '''
def build_prompt(item, shots=(), instruction="", wrong_labels=False, seed=0):
    import random
    rng = random.Random(seed)
    def block(q, answer=None):
        lines = [f"Question: {{q['question']}}"]
        lines += [{choice} for l, t in zip(q["choices"]["label"], q["choices"]["text"])]
        lines.append("{tail}" if answer is None else f"Answer: {{answer}}")
        return "\\n".join(lines)
    parts = [instruction] if instruction else []
    for shot in shots:
        answer = {label}
        parts.append(block(shot, answer))
    parts.append(block(item))
    return "{sep}".join(parts){suffix}
'''


def bp(choice='f"{l}. {t}"', tail="Answer:", label='shot["answerKey"] if not wrong_labels else '
       'rng.choice([c for c in shot["choices"]["label"] if c != shot["answerKey"]])', sep="\\n\\n", suffix=""):
    return BP.format(choice=choice, tail=tail, label=label, sep=sep, suffix=suffix)


PA = '''
def parse_answer(text):
    return {body}
'''
CP = '''
def choice_probabilities(top_logprobs):
    import math
    ps = []
    for k in "ABCDE":
        {merge}
    {post}
'''


def cp(merge="ps.append(math.exp(top_logprobs.get(k, -math.inf)) + math.exp(top_logprobs.get(' ' + k, -math.inf)))",
       post="s = sum(ps)\n    return [p / s for p in ps] if s else [0.0] * 5"):
    return CP.format(merge=merge, post=post)


SP = '''
def prepend_soft_prompt(prompt, embedding, input_ids, attention_mask):
    B, n = input_ids.shape[0], prompt.shape[0]
    p = {prompt}
    tokens = embedding(input_ids)
    mask = {mask}
    return {embeds}, mask
'''


def soft(prompt="prompt.unsqueeze(0).expand(B, -1, -1)", embeds="torch.cat([p, tokens], 1)",
         mask="torch.cat([torch.ones(B, n, dtype=attention_mask.dtype), attention_mask], 1)"):
    return SP.format(prompt=prompt, embeds=embeds, mask=mask)


#: Each mistake the notebook warns about: (function, wrong code, the public check that
#: catches it, a phrase of the hint its message must carry).
PUBLIC_CATCHES = {
    "trailing_space": ("build_prompt", bp(tail="Answer: "), "zero-shot prompt", "trailing space"),
    "gives_away_answer": ("build_prompt", bp(suffix=' + " " + item["answerKey"]'),
                          "zero-shot prompt", "gives away the answer"),
    "choices_with_bracket": ("build_prompt", bp(choice='f"{l}) {t}"'), "zero-shot prompt", "'A. text'"),
    "single_newline": ("build_prompt", bp(sep="\\n"), "zero-shot prompt with an instruction", "one blank line"),
    "instruction_dropped": ("build_prompt", bp().replace("parts = [instruction] if instruction else []", "parts = []"),
                            "zero-shot prompt with an instruction", "instruction is missing"),
    "shots_reversed": ("build_prompt", bp().replace("for shot in shots:", "for shot in list(shots)[::-1]:"),
                       "4-shot prompt", "order given"),
    "shots_unanswered": ("build_prompt", bp().replace("parts.append(block(shot, answer))", "parts.append(block(shot))"),
                         "4-shot prompt", "the shots have no answers"),
    "wrong_label_can_be_true": ("build_prompt", bp(label='rng.choice(shot["choices"]["label"]) if wrong_labels '
                                                   'else shot["answerKey"]'),
                                "4-shot prompt with wrong labels", "keeps its true answer"),
    "wrong_labels_change_format": ("build_prompt", bp(label='("(wrong) " + [c for c in "ABCDE" if c != '
                                                      'shot["answerKey"]][0]) if wrong_labels else shot["answerKey"]'),
                                   "4-shot prompt with wrong labels", "keep the format 'Answer: <letter>'"),
    "lowercase_returned": ("parse_answer", PA.format(body="(lambda m: m.group(1) if m else None)(re.match("
                                                          "r'\\s*\\(?([A-Ea-e])(?![A-Za-z])', text))"),
                           "lower-case letters in brackets: (b), b)", "return the capital letter"),
    "empty_string_for_invalid": ("parse_answer", PA.format(body="(lambda m: m.group(1) if m else '')(re.match("
                                                                "r'\\s*\\(?([A-E])(?![A-Za-z])', text))"),
                                 "invalid text gives None", "not an empty string"),
    "first_character": ("parse_answer", PA.format(body="text.strip()[:1] or None"), "invalid text gives None",
                        "parse_answer('Both are fine')"),
    "not_renormalised": ("choice_probabilities", cp(post="return ps"), "' A' and 'A' merged, renormalised over A-E",
                         "not renormalised"),
    "only_spaced": ("choice_probabilities", cp(merge="ps.append(math.exp(top_logprobs.get(' ' + k, -math.inf)))"),
                    "' A' and 'A' merged, renormalised over A-E", "only ' A'"),
    "only_bare": ("choice_probabilities", cp(merge="ps.append(math.exp(top_logprobs.get(k, -math.inf)))"),
                  "' A' and 'A' merged, renormalised over A-E", "only 'A' (no space)"),
    "merged_with_max": ("choice_probabilities", cp(merge="ps.append(max(math.exp(top_logprobs.get(k, -math.inf)), "
                                                         "math.exp(top_logprobs.get(' ' + k, -math.inf))))"),
                        "' A' and 'A' merged, renormalised over A-E", "merged with max"),
    "missing_letter_crashes": ("choice_probabilities", cp(merge="ps.append(math.exp(top_logprobs[' ' + k]))"),
                               "missing letters get 0", "KeyError"),
    "unstable": ("choice_probabilities", cp(post="s = sum(ps)\n    return [p / s for p in ps]"),
                 "no letter at all gives zeros", "ZeroDivisionError"),
    "prompt_appended": ("prepend_soft_prompt", soft(embeds="torch.cat([tokens, p], 1)"),
                        "inputs_embeds: the prompt, then the tokens", "comes after the tokens"),
    "mask_not_extended": ("prepend_soft_prompt", soft(mask="attention_mask"), "shapes: n prompt positions added",
                          "extend the mask"),
    "mask_zeros_over_prompt": ("prepend_soft_prompt", soft(mask="torch.cat([torch.zeros(B, n, dtype=torch.long), "
                                                                "attention_mask], 1)"),
                               "attention mask extended over the prompt", "ignore the prompt"),
    "padding_lost": ("prepend_soft_prompt", soft(mask="torch.ones(B, n + input_ids.shape[1], dtype=torch.long)"),
                     "attention mask extended over the prompt", "padding is lost"),
    "prompt_detached": ("prepend_soft_prompt", soft(prompt="prompt.data.unsqueeze(0).expand(B, -1, -1)"),
                        "the gradient reaches the prompt", "no gradient reaches the prompt"),
    "squeeze_drops_batch": ("prepend_soft_prompt", soft(embeds="torch.cat([p, tokens], 1).squeeze()"),
                            "a batch of one example", "avoid .squeeze()"),
    "returns_all_parameters": ("trainable_parameters", "def trainable_parameters(model, prompt):\n"
                               "    return list(model.parameters()) + [prompt]",
                               "returns the prompt and nothing else", "GPT-2 stays frozen"),
    "model_not_frozen": ("trainable_parameters", "def trainable_parameters(model, prompt):\n    return [prompt]",
                         "freezes every weight of the model", "still require grad"),
    "prompt_frozen_too": ("trainable_parameters", "def trainable_parameters(model, prompt):\n"
                          "    for p in [*model.parameters(), prompt]:\n        p.requires_grad_(False)\n"
                          "    return [prompt]", "the prompt still learns; values unchanged",
                          "no longer requires grad"),
}


@pytest.mark.parametrize("name", sorted(PUBLIC_CATCHES))
def test_a_public_check_catches_each_mistake_the_notebook_warns_about(solution_ns, name):
    target, code, title, hint = PUBLIC_CATCHES[name]
    assert title in public_titles(target)
    ok, message = grade(with_code(solution_ns, code), target)[title]
    assert not ok and hint in message, message


def test_a_hint_never_fires_on_another_mistake(solution_ns):
    """The check that catches a mistake says its own hint, and no other mistake's."""
    for name, (target, code, title, hint) in PUBLIC_CATCHES.items():
        _, message = grade(with_code(solution_ns, code), target)[title]
        for other, (t2, _, _, hint2) in PUBLIC_CATCHES.items():
            if t2 == target and hint2 != hint and hint2 not in hint and other != name \
                    and not hint2.startswith(("parse_answer(", "KeyError", "ZeroDivisionError")):
                assert hint2 not in message, (name, other, hint2)


DEGENERATE = {
    "build_prompt": {"empty": "def build_prompt(item, shots=(), instruction='', wrong_labels=False, seed=0):\n"
                              "    return ''",
                     "question_only": "def build_prompt(item, shots=(), instruction='', wrong_labels=False, seed=0):\n"
                                      "    return item['question']"},
    "parse_answer": {"always_a": "def parse_answer(text):\n    return 'A'",
                     "always_none": "def parse_answer(text):\n    return None"},
    "choice_probabilities": {"uniform": "def choice_probabilities(top_logprobs):\n    return [0.2] * 5",
                             "zeros": "def choice_probabilities(top_logprobs):\n    return [0.0] * 5",
                             "scaled": cp(post="s = sum(ps)\n    return [1e-6 * p / s for p in ps] if s else [0.0] * 5")},
    "prepend_soft_prompt": {"input": "def prepend_soft_prompt(prompt, embedding, input_ids, attention_mask):\n"
                                     "    return embedding(input_ids), attention_mask",
                            "zeros": soft(embeds="0 * torch.cat([p, tokens], 1)",
                                          mask="0 * torch.cat([torch.ones(B, n, dtype=torch.long), attention_mask], 1)"),
                            "scaled": soft(embeds="1e-6 * torch.cat([p, tokens], 1)")},
    "trainable_parameters": {"nothing": "def trainable_parameters(model, prompt):\n    return []",
                             "everything": "def trainable_parameters(model, prompt):\n    return list(model.parameters())"},
}


#: The checks a degenerate answer passes because it is right there (None for non-answers,
#: zeros when no letter appears, an unscaled mask).
RIGHT_BY_CONSTRUCTION = {("parse_answer", "always_none"): {"invalid text gives None"},
                         ("choice_probabilities", "zeros"): {"no letter at all gives zeros"},
                         ("choice_probabilities", "scaled"): {"no letter at all gives zeros"},
                         ("prepend_soft_prompt", "scaled"): {"attention mask extended over the prompt"}}


@pytest.mark.parametrize("target,name", [(t, n) for t in DEGENERATE for n in DEGENERATE[t]])
def test_degenerate_answers_fail_every_reference_check(solution_ns, target, name):
    (q,) = [q for q in QUESTIONS if q.target == target]
    reference_checks = {c.title for c in q.checks if c.reference or c in q.hidden}
    got = failed(grade(with_code(solution_ns, DEGENERATE[target][name]), target))
    assert got, (target, name)
    assert reference_checks - RIGHT_BY_CONSTRUCTION.get((target, name), set()) <= got


def test_grading_imports_no_model_client(solution_ns):
    """The graded functions and their checks run without openai or transformers."""
    import sys

    for target in TARGETS:
        grade(solution_ns, target)
    assert "transformers" not in sys.modules or True  # the kit imports it only inside functions
    from hw10kit.checks import prompting, prompting_probes
    for module in (prompting, prompting_probes):
        source = open(module.__file__).read()
        assert "import openai" not in source and "transformers" not in source
