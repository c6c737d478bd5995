"""Soft prompts on a tiny GPT-2 (random weights, GPT-2's real vocabulary, no download): a
few training steps lower the loss, only the prompt moves, the learning rate is the one
given, the model trains in train mode, a last batch of one works, and the hard-prompt
baseline runs the plain model. The noun list and the single-token filter are checked
against GPT-2's real vocabulary (data/gpt2, from openai-whisper's MIT-licensed asset)."""
import pytest
import torch

pytest.importorskip("transformers")

from hw10kit.notebook import load_definitions  # noqa: E402
from hw10kit.prompting import data as pdata  # noqa: E402
from hw10kit.prompting import soft as sp  # noqa: E402
from hw10kit.prompting.server import gpt2_tokenizer, tiny_gpt2  # noqa: E402


@pytest.fixture(scope="module")
def ns():
    return load_definitions("source/hw10/hw10_prompting.ipynb")


@pytest.fixture(scope="module")
def tokenizer():
    return gpt2_tokenizer()


@pytest.fixture(scope="module")
def nouns():
    return pdata.load_nouns()


def test_the_tokenizer_is_gpt2s(tokenizer):
    assert len(tokenizer) == 50257 and tokenizer.eos_token_id == 50256
    assert tokenizer.encode("Hello world") == [15496, 995]  # GPT-2's published ids
    assert len(tokenizer.encode(" wolves")) == 1 and len(tokenizer.encode(" lives")) == 1


def test_the_filter_tokenizes_the_plural_with_its_leading_space(tokenizer):
    pairs = [("life", "lives"), ("family", "families"), ("octopus", "octopuses")]
    kept = pdata.single_token_plurals(pairs, tokenizer)
    assert kept == [("life", "lives"), ("family", "families")]
    # without the space they are two tokens: a filter that forgot the space would have dropped them
    assert len(tokenizer.encode("lives")) > 1 and len(tokenizer.encode("families")) > 1


@pytest.mark.slow  # inflect checks 500 nouns: about 15 s
def test_every_shipped_noun_is_singular_and_its_plural_is_inflects_and_one_token(nouns, tokenizer):
    inflect = pytest.importorskip("inflect")
    engine = inflect.engine()
    assert 300 <= len(nouns) <= 1000
    for singular, plural in nouns:
        assert engine.singular_noun(singular) is False, singular   # not already plural (savings, thanks)
        assert engine.plural_noun(singular) == plural, singular
        assert len(tokenizer.encode(" " + plural)) == 1, plural
    inputs = {s for s, _ in nouns}
    assert not inputs & {"savings", "thanks", "news", "series"}
    assert set(pdata.TEST_NOUNS) <= inputs


def test_the_splits_are_fixed_seeded_and_disjoint(nouns):
    a, b, c = pdata.noun_splits(0), pdata.noun_splits(0), pdata.noun_splits(1)
    assert a == b and a["val"] != c["val"] and a["test"] == c["test"]
    assert {s for s, _ in a["test"]} == set(pdata.TEST_NOUNS)
    seen = [s for part in a.values() for s, _ in part]
    assert len(seen) == len(set(seen)) == len(nouns)


def test_commonsenseqa_is_the_shipped_file_and_shots_are_never_scored():
    items = pdata.load_commonsenseqa()
    assert len(items) == 1221 and items[0]["choices"]["label"] == list("ABCDE")
    pool, scored = pdata.commonsenseqa_split(n_scored=200, seed=0)
    assert len(pool) == pdata.SHOT_POOL and len(scored) == 200
    assert not {q["id"] for q in pool} & {q["id"] for q in scored}
    assert scored == pdata.commonsenseqa_split(n_scored=200, seed=0)[1]


def test_prompts_of_every_format_share_one_format(ns):
    pool, scored = pdata.commonsenseqa_split(n_scored=3)
    q = scored[0]
    plain, few = ns["build_prompt"](q), ns["build_prompt"](q, pool[:4])
    wrong = ns["build_prompt"](q, pool[:4], wrong_labels=True, seed=5)
    assert few.endswith(plain) and wrong.endswith(plain) and len(wrong) == len(few)
    assert sum(a != b for a, b in zip(wrong, few)) == 4


@pytest.fixture()
def model():
    # larger random weights than GPT-2's init, no dropout: the output then depends on the prompt
    m, _ = tiny_gpt2(seed=1, n_layer=1, n_embd=32, initializer_range=0.5, dropout=0.0)
    return m


def test_a_few_steps_lower_the_loss_and_only_the_prompt_moves(ns, model, tokenizer, nouns):
    frozen = {k: v.clone() for k, v in model.state_dict().items()}
    soft = sp.SoftPrompt(model, tokenizer, 4, ns["prepend_soft_prompt"], ns["trainable_parameters"])
    start = soft.prompt.detach().clone()
    train = nouns[:9]   # 9 = one batch of 8 and a last batch of ONE
    history = sp.train_soft_prompt(soft, train, nouns[9:13], epochs=5, lr=0.05, batch_size=8, log=None)
    assert history["loss"][-1] < history["loss"][1] - 0.5
    assert all(torch.equal(frozen[k], v) for k, v in model.state_dict().items())
    assert not torch.equal(start, soft.prompt.detach())
    assert model.training  # back in train mode after every epoch's evaluation


def test_the_learning_rate_given_is_the_one_used(ns, model, tokenizer, nouns):
    moved = []
    for lr in (1e-3, 1e-2):
        soft = sp.SoftPrompt(model, tokenizer, 3, ns["prepend_soft_prompt"], ns["trainable_parameters"])
        start = soft.prompt.detach().clone()
        sp.train_soft_prompt(soft, nouns[:8], nouns[8:9], epochs=1, lr=lr, batch_size=8, log=None)
        moved.append(float((soft.prompt.detach() - start).abs().max()))
    # one Adam step moves each coordinate by about lr
    assert moved[0] == pytest.approx(1e-3, rel=0.2) and moved[1] == pytest.approx(1e-2, rel=0.2)


def test_the_hard_prompt_baseline_runs_the_plain_model(model, tokenizer, nouns):
    curve = sp.hard_prompt_curve(model, tokenizer, nouns[:20], nouns[20:26], ks=(0, 3))
    assert set(curve) == {0, 3} and all(0 <= r["accuracy"] <= 1 and r["n"] == 6 for r in curve.values())
    assert sp.hard_prompt("wolf", [("cat", "cats")]) == "Singular: cat\nPlural: cats\n\nSingular: wolf\nPlural:"
    wrong = curve[0]["wrong"]
    assert sum(c for _, c in wrong) == 6 - round(6 * curve[0]["accuracy"])
