"""pass@k: the chance that at least one of ``k`` samples passes, estimated without bias.

Codex (Chen et al. 2021, "Evaluating Large Language Models Trained on Code") draws ``n >= k``
samples per problem, counts the ``c`` that pass, and estimates

    pass@k = E_problems[ 1 - C(n - c, k) / C(n, k) ]

``C(n - c, k) / C(n, k)`` is the probability that ``k`` samples drawn without replacement from
the ``n`` are all failures. Computing ``1 - c/n`` to the power ``k`` instead (sampling with
replacement) is biased low. The product form below avoids huge binomials.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one problem with ``n`` samples of which ``c`` passed.

    ``1 - prod_{i=n-c+1}^{n} (1 - k / i)``, which equals ``1 - C(n-c, k) / C(n, k)``. Raises
    ``ValueError`` unless ``0 <= c <= n`` and ``1 <= k <= n``."""
    if not (0 <= c <= n):
        raise ValueError(f"pass_at_k: need 0 <= c <= n, got n={n}, c={c}")
    if not (1 <= k <= n):
        raise ValueError(f"pass_at_k: need 1 <= k <= n, got n={n}, k={k}")
    if n - c < k:  # every draw of k samples contains a passing one
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def mean_pass_at_k(num_samples: Sequence[int], num_correct: Sequence[int], k: int) -> float:
    """pass@k averaged over problems (``num_samples[i]``, ``num_correct[i]`` per problem).
    Problems with fewer than ``k`` samples raise ``ValueError`` naming the problem index."""
    if len(num_samples) != len(num_correct):
        raise ValueError(
            f"mean_pass_at_k: {len(num_samples)} sample counts but {len(num_correct)} correct counts"
        )
    if not num_samples:
        raise ValueError("mean_pass_at_k: no problems")
    vals = []
    for i, (n, c) in enumerate(zip(num_samples, num_correct)):
        if n < k:
            raise ValueError(f"mean_pass_at_k: problem {i} has n={n} samples < k={k}")
        vals.append(pass_at_k(int(n), int(c), k))
    return float(np.mean(vals))
