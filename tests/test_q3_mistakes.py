"""Every mistake of the GAN losses' MISTAKES table, on every input design a value check
uses (public and hidden), differs from the reference and from every other mistake by far
more than the checks' tolerance: so each mistake fails every value check, and the hint it
gets is its own. At extreme logits the guarded log(sigmoid) forms (epsilon, clamp,
F.binary_cross_entropy on sigmoid outputs) are told apart from the table's mistakes too.
Pure numpy over many seeds: the designs' logits, not student code."""
import itertools

import numpy as np
import pytest
from hw10grader.hidden import gan as hidden
from hw10kit.checks import gan

#: The checks compare at rtol 1e-4 (value); demand a hundred times that.
MARGIN = 1e-2
SEEDS = range(200)


def value_designs(target):
    """Every design a check that judges the value uses: name -> inputs(rng)."""
    designs = {"training_like (public value)": gan.training_like(target),
               "extreme (public)": gan.extreme(target),
               "other_batch (hidden)": gan.other_batch(target)}
    if target == gan.D_LOSS:
        designs["confident (hidden)"] = hidden.confident(target)
    return designs


def test_the_designs_listed_here_are_every_design_a_value_check_uses():
    """Guards the test below: a new value check must bring its design here."""
    value_verdicts = {gan.value_verdict, gan.extreme_verdict, gan.value_and_gradient_verdict}
    checks = [c for c in [*gan.PUBLIC, *hidden.HIDDEN] if c.verdict in value_verdicts]
    rng_inputs = {}
    for c in checks:
        inputs = c.inputs(np.random.default_rng(5))
        rng_inputs.setdefault(c.target, []).append(inputs)
    for target, produced in rng_inputs.items():
        kinds = {name: mk(np.random.default_rng(5)) for name, mk in value_designs(target).items()}
        for inputs in produced:  # same generator, same seed: a design reproduces its inputs exactly
            assert any(np.array_equal(inputs["real"], k["real"]) for k in kinds.values()), target


def _separation(a, b):
    return abs(a - b) / max(abs(a), abs(b))


@pytest.mark.parametrize("target", [gan.D_LOSS, gan.NS_G, gan.MM_G])
def test_every_mistake_is_told_apart_on_every_design(target):
    for name, make in value_designs(target).items():
        for seed in SEEDS:
            inputs = make(np.random.default_rng(seed))
            lr, lf = inputs["real_logits"], inputs["fake_logits"]
            named = [("the reference", gan.REFERENCE[target](lr, lf))]
            named += [(hint[:60], m.value) for m, (_, hint) in zip(gan.mistakes(target, lr, lf),
                                                                    gan.MISTAKES[target])]
            for (na, a), (nb, b) in itertools.combinations(named, 2):
                assert _separation(a, b) > MARGIN, (name, seed, na, nb, a, b)
            if "extreme" in name:
                for guarded in gan.guarded_log_mistakes(target, lr, lf):
                    for na, a in named:
                        assert _separation(a, guarded.value) > MARGIN, (name, seed, na, guarded.hint[:60])


@pytest.mark.parametrize("target", [gan.D_LOSS, gan.NS_G, gan.MM_G])
def test_swapped_or_sign_flipped_values_fail_at_extreme_logits(target):
    """The extreme logits are asymmetric: mean softplus(l) != mean softplus(-l), so the
    swapped labels and the sign-flipped minimax loss no longer pass there."""
    for seed in SEEDS:
        inputs = gan.extreme(target)(np.random.default_rng(seed))
        lr, lf = inputs["real_logits"], inputs["fake_logits"]
        assert _separation(np.mean(gan.softplus(lf)), np.mean(gan.softplus(-lf))) > MARGIN
        assert _separation(np.mean(gan.softplus(lr)), np.mean(gan.softplus(-lr))) > MARGIN


def test_the_extreme_logits_lie_where_float32_sigmoid_is_saturated_or_exact():
    """So that the guarded forms' values are exact (the hint that names them cannot miss)."""
    for logit in np.concatenate([gan.EXTREME_REAL, gan.EXTREME_FAKE]):
        assert logit < gan.SIGMOID_ZERO_BELOW or logit > gan.SIGMOID_ONE_ABOVE or -87 < logit < -20
