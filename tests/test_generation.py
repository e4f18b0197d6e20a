"""Generation with a KV cache against full forwards and transformers' generate (greedy)."""

import pytest
import torch

from qcoder_lib.model.generation import KVCache, generate, left_pad, sample_next_token
from qcoder_lib.model.hf_interop import from_hf


@pytest.fixture(scope="module")
def models(hf_tiny_model):
    # std 0.3: sharp next-token distributions, so greedy decoding is not a coin toss
    hf = hf_tiny_model(std=0.3, hidden_size=48, intermediate_size=64, num_attention_heads=6)
    return hf, from_hf(hf)


def hf_greedy(hf, prompts, n, pad=0):
    ids, mask = left_pad(prompts, pad)
    out = hf.generate(
        input_ids=ids,
        attention_mask=mask,
        max_new_tokens=n,
        do_sample=False,
        pad_token_id=pad,
        eos_token_id=None,
        min_new_tokens=n,
    )
    return out[:, ids.shape[1] :].tolist()


def test_cached_decoding_matches_full_forward(models):
    _, ours = models
    ids = torch.randint(0, 64, (2, 12))
    with torch.no_grad():
        full = ours(ids)
        cache = KVCache(ours.config, 2, 12)
        parts = [ours(ids[:, :5], cache=cache)]
        for t in range(5, 12):
            parts.append(ours(ids[:, t : t + 1], cache=cache))
    assert (torch.cat(parts, 1) - full).abs().max().item() <= 1e-5


def test_greedy_matches_transformers_generate(models):
    hf, ours = models
    torch.manual_seed(1)
    prompt = torch.randint(1, 64, (7,)).tolist()
    assert ours.generate([prompt], 12) == hf_greedy(hf, [prompt], 12)


@pytest.mark.parametrize("backend", ["eager", "sdpa", "triton"])
def test_batched_prompts_of_different_lengths(models, backend):
    """Left-padded batches equal each prompt alone and transformers' generate, on every backend
    (triton falls back to SDPA under a KV cache and a padding mask)."""
    hf, ours = models
    ours.config.attn_implementation = backend
    torch.manual_seed(2)
    prompts = [torch.randint(1, 64, (n,)).tolist() for n in (3, 9, 6)]
    batched = generate(ours, prompts, 10)
    alone = [generate(ours, [p], 10)[0] for p in prompts]
    assert batched == alone
    assert batched == hf_greedy(hf, prompts, 10)
    ours.config.attn_implementation = "sdpa"


def test_stop_tokens(models):
    _, ours = models
    prompts = [[5, 6, 7], [9, 1]]
    free = generate(ours, prompts, 8)
    stop = free[0][3]
    cut = generate(ours, prompts, 8, stop_token_ids=[stop])
    kept = generate(ours, prompts, 8, stop_token_ids=[stop], keep_stop_token=True)
    for row, c, k in zip(free, cut, kept):
        n = row.index(stop) if stop in row else len(row)
        assert c == row[:n]
        assert k == row[: n + 1]


def test_sampling_rules():
    logits = torch.tensor([[4.0, 3.0, 0.0, -1.0]]).repeat(500, 1)
    assert sample_next_token(logits[:1]).tolist() == [0]
    g = torch.Generator().manual_seed(0)
    assert set(sample_next_token(logits, 1.0, top_k=1, generator=g).tolist()) == {0}
    top2 = sample_next_token(logits, 1.0, top_k=2, generator=g)
    assert set(top2.tolist()) == {0, 1}
    # p(0)=0.70, p(1)=0.26: top_p=0.5 keeps only token 0; top_p=0.9 keeps 0 and 1
    assert set(sample_next_token(logits, 1.0, top_p=0.5, generator=g).tolist()) == {0}
    assert set(sample_next_token(logits, 1.0, top_p=0.9, generator=g).tolist()) == {0, 1}
    anything = sample_next_token(logits, 1.0, generator=g)
    assert set(anything.tolist()) == {0, 1, 2, 3}
    # high temperature flattens the distribution: token 3 becomes common
    hot = sample_next_token(logits, 100.0, generator=g)
    assert (hot == 3).float().mean() > 0.15


def test_seeded_sampling_repeats(models):
    _, ours = models
    a = generate(ours, [[1, 2, 3]], 8, temperature=1.0, top_p=0.9, seed=7)
    b = generate(ours, [[1, 2, 3]], 8, temperature=1.0, top_p=0.9, seed=7)
    assert a == b and len(a[0]) == 8


def test_cache_overflow_and_empty_prompt_are_reported(models):
    _, ours = models
    cache = KVCache(ours.config, 1, 4)
    with pytest.raises(ValueError, match="KVCache is full"):
        ours(torch.zeros(1, 5, dtype=torch.long), cache=cache)
    with pytest.raises(ValueError, match="at least one token"):
        generate(ours, [[]], 3)
