"""Problem 1's data: CommonsenseQA's validation split (MIT licence; ``data/commonsenseqa/``)
and the nouns for "pluralize the noun" (``data/nouns/nouns.tsv``), both shipped; GPT-2's BPE
vocabulary (``data/gpt2/``, MIT) for the offline tokenizer.

The data folder is found at ``$HW10_DATA``, else ``./data`` (the homework folder), else
next to ``hw10kit/``.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path

CSQA_FILE = "dev_rand_split.jsonl"
CSQA_SHA256 = "4c036e81eec3cb86477bc1b97c21c56aa17d92ab9f8537c855dc0cf724b05fe0"
#: The few-shot examples come from the first SHOT_POOL questions of the file; they are
#: never scored. Scored questions are drawn from the rest.
SHOT_POOL = 20
#: The fixed test nouns (irregular plurals), held out of training and validation.
TEST_NOUNS = ("foot", "man", "person", "self", "wife", "wolf", "woman")


class MissingData(FileNotFoundError):
    """A data file of the homework is not where the kit looks. Shown as one line."""

    def _render_traceback_(self):
        return [f"\u26a0 {self}"]


def data_dir(sub: str = "") -> Path:
    candidates = [Path(os.environ["HW10_DATA"])] if os.environ.get("HW10_DATA") else []
    candidates += [Path.cwd() / "data", Path(__file__).resolve().parents[2] / "data"]
    candidates = list(dict.fromkeys(c.resolve() for c in candidates))
    for base in candidates:
        if (base / sub).exists():
            return base / sub
    raise MissingData(f"data/{sub} was not found (looked in {', '.join(str(c) for c in candidates)}): keep the "
                      "homework's data/ folder next to the notebook, or set HW10_DATA to it")


def load_commonsenseqa(verify: bool = True) -> list:
    """The 1,221 validation questions, in file order: dicts with ``id``, ``question``,
    ``question_concept``, ``choices`` (``label`` A-E, ``text``) and ``answerKey``."""
    path = data_dir("commonsenseqa") / CSQA_FILE
    raw = path.read_bytes()
    if verify and hashlib.sha256(raw).hexdigest() != CSQA_SHA256:
        raise MissingData(f"{path} is not the shipped file (sha256 differs): download data/ again")
    return [json.loads(line) for line in raw.decode("utf-8").splitlines() if line.strip()]


def commonsenseqa_split(n_scored: int = 200, seed: int = 0) -> tuple:
    """``(shot_pool, scored)``: the first SHOT_POOL questions (few-shot examples only) and
    ``n_scored`` questions drawn with ``seed`` from the others."""
    items = load_commonsenseqa()
    pool, rest = items[:SHOT_POOL], items[SHOT_POOL:]
    scored = random.Random(seed).sample(rest, min(n_scored, len(rest)))
    return pool, scored


def load_nouns() -> list:
    """``[(singular, plural), ...]`` from ``data/nouns/nouns.tsv``."""
    path = data_dir("nouns") / "nouns.tsv"
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            singular, plural = line.split("\t")[:2]
            rows.append((singular, plural))
    return rows


def noun_splits(seed: int = 0, val_fraction: float = 0.2, nouns=None) -> dict:
    """``{"train", "val", "test"}`` lists of ``(singular, plural)``: the fixed TEST_NOUNS,
    and the others split into train and validation by a seeded shuffle."""
    nouns = load_nouns() if nouns is None else list(nouns)
    test = [p for p in nouns if p[0] in TEST_NOUNS]
    rest = [p for p in nouns if p[0] not in TEST_NOUNS]
    random.Random(seed).shuffle(rest)
    n_val = int(round(val_fraction * len(rest)))
    return {"train": rest[n_val:], "val": rest[:n_val], "test": test}


def single_token_plurals(pairs, tokenizer) -> list:
    """The pairs whose plural, WITH the leading space it has after "Plural:", is one token
    (the label is that token)."""
    return [(s, p) for s, p in pairs if len(tokenizer.encode(" " + p)) == 1]
