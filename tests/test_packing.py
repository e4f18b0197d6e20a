"""Packing samples into fixed-length rows: nothing lost, positions restart, masks are right."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from qcoder_lib.packing import PackedBatch, document_mask, pack_sequences, unpack

EOS = 999
samples_st = st.lists(st.lists(st.integers(0, 500), max_size=40), max_size=25)


def with_eos(samples):
    return [s if s and s[-1] == EOS else s + [EOS] for s in samples]


@settings(max_examples=150, deadline=None)
@given(samples=samples_st, seq_len=st.integers(1, 48), strategy=st.sampled_from(
    ["concat", "best_fit"]))
def test_no_token_lost_or_duplicated_and_positions_restart(samples, seq_len, strategy):
    b = pack_sequences(samples, seq_len, strategy=strategy, eos_id=EOS, pad_id=EOS + 1)
    docs = with_eos(samples)
    total = sum(map(len, docs))
    n, length = b.input_ids.shape
    assert length == seq_len and b.n_tokens == total
    assert unpack(b) == docs  # every token back, once, in order, in its own document
    assert b.utilisation == pytest.approx(total / max(n * seq_len, 1))
    # independently of the recorded pieces: (document, token) pairs are the same multiset
    got = Counter(zip(b.document_ids.flatten().tolist(), b.input_ids.flatten().tolist()))
    want = Counter((d, t) for d, s in enumerate(docs) for t in s)
    assert {k: v for k, v in got.items() if k[0] >= 0} == want
    # real tokens are exactly those with a document id; padding only in the free tail of rows
    real = b.document_ids >= 0
    assert int(real.sum()) == total
    assert bool((b.input_ids[~real] == EOS + 1).all())
    for r in range(n):
        pos, doc = b.position_ids[r].tolist(), b.document_ids[r]
        k = int((doc >= 0).sum())
        assert bool((doc[:k] >= 0).all()) and bool((doc[k:] < 0).all())
        for t in range(seq_len):
            starts_piece = t == 0 or doc[t] != doc[t - 1] or pos[t] == 0
            if t == 0 or doc[t] != doc[t - 1]:
                assert pos[t] == 0  # a new document (or padding) restarts the positions
            if not starts_piece:
                assert pos[t] == pos[t - 1] + 1
    if strategy == "concat":
        # one stream cut every seq_len tokens: only the last row has padding
        assert n == math.ceil(total / seq_len)
        flat = b.input_ids.flatten()[: total].tolist()
        assert flat == [t for d in docs for t in d]
    else:
        # whole samples are never cut unless longer than a row
        for d, s in enumerate(docs):
            pieces = [p for p in b.pieces if p[0] == d]
            assert len(pieces) == max(1, math.ceil(len(s) / seq_len))
            assert all(p[3] == seq_len for p in pieces[:-1])


def test_utilisation_concat_versus_best_fit():
    # three 41-token samples in rows of 64: concat needs 2 rows, whole samples need 3
    samples = [[1] * 40] * 3
    concat = pack_sequences(samples, 64, eos_id=EOS)
    best = pack_sequences(samples, 64, strategy="best_fit", eos_id=EOS)
    assert concat.utilisation == 123 / 128 and best.utilisation == 123 / 192
    assert concat.n_split == 1 and best.n_split == 0
    # best_fit cuts only a sample longer than a row
    long = pack_sequences([[1] * 100, [2] * 10], 64, strategy="best_fit", eos_id=EOS)
    assert long.n_split == 1 and long.input_ids.shape == (2, 64)


def test_document_mask_matches_per_document_attention():
    # attention over a packed row with the mask == attention over each document on its own
    torch.manual_seed(0)
    samples = [[1, 2, 3, 4, 5], [6, 7], [8, 9, 10, 11, 12, 13, 14]]
    b = pack_sequences(samples, 8, eos_id=EOS)
    q, k, v = (torch.randn(b.input_ids.shape[0], 2, 8, 4) for _ in range(3))  # (N, H, T, D)
    mask = document_mask(b.position_ids)  # (N, T, T)
    packed = F.scaled_dot_product_attention(q, k, v, attn_mask=mask.unsqueeze(1))
    for d, r, c, n in b.pieces:
        alone = F.scaled_dot_product_attention(
            q[r : r + 1, :, c : c + n], k[r : r + 1, :, c : c + n], v[r : r + 1, :, c : c + n],
            is_causal=True)
        assert torch.allclose(packed[r : r + 1, :, c : c + n], alone, atol=1e-6), (d, r)


def test_packed_rows_through_the_model_equal_documents_alone():
    # the model masks across documents from the restarting position ids (the course contract)
    from qcoder_lib.model import QwenConfig, QwenForCausalLM

    torch.manual_seed(0)
    cfg = QwenConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=2, attn_implementation="eager")
    model = QwenForCausalLM(cfg).eval()
    samples = [[1, 2, 3, 4, 5], [6, 7], [8, 9, 10, 11, 12, 13, 14, 15, 16]]
    b = pack_sequences(samples, 8, eos_id=63, pad_id=0)
    with torch.no_grad():
        packed = model(b.input_ids, position_ids=b.position_ids)  # (N, L, V)
        for d, r, c, n in b.pieces:
            alone = model(b.input_ids[r : r + 1, c : c + n])
            assert torch.allclose(packed[r, c : c + n], alone[0], atol=1e-5), (d, r, c)


def test_document_mask_by_hand():
    pos = torch.tensor([0, 1, 2, 0, 1, 0])
    want = torch.tensor([
        [1, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0],
        [0, 0, 0, 1, 0, 0],
        [0, 0, 0, 1, 1, 0],
        [0, 0, 0, 0, 0, 1],
    ], dtype=torch.bool)
    assert torch.equal(document_mask(pos), want)
    assert torch.equal(document_mask(pos.unsqueeze(0))[0], want)
    # a jump that is not a restart also starts a document (transformers' rule)
    assert torch.equal(document_mask(torch.tensor([0, 1, 2, 7, 8, 0])), want)


def test_labels_stay_inside_documents():
    b = pack_sequences([[1, 2, 3], [4, 5]], 4, eos_id=EOS, pad_id=0)
    # rows: [1 2 3 EOS] [4 5 EOS pad]
    assert b.input_ids.tolist() == [[1, 2, 3, EOS], [4, 5, EOS, 0]]
    assert b.labels().tolist() == [[2, 3, EOS, -100], [5, EOS, -100, -100]]
    assert b.position_ids.tolist() == [[0, 1, 2, 3], [0, 1, 2, 0]]
    assert b.document_ids.tolist() == [[0, 0, 0, 0], [1, 1, 1, -1]]


def test_split_rule_concat_continues_at_position_zero():
    b = pack_sequences([[1, 2, 3, 4, 5, 6]], 4)
    assert b.input_ids.tolist() == [[1, 2, 3, 4], [5, 6, 0, 0]]
    assert b.position_ids.tolist()[1][:2] == [0, 1] and b.n_split == 1
    assert pack_sequences([[1, 2, 3, 4, 5, 6]], 4, drop_last=True).input_ids.shape == (1, 4)


def test_bad_arguments():
    with pytest.raises(ValueError, match="seq_len"):
        pack_sequences([[1]], 0)
    with pytest.raises(ValueError, match="strategy"):
        pack_sequences([[1]], 4, strategy="greedy")


def test_packed_batch_built_by_hand_labels_and_utilisation():
    """PackedBatch's own rules on a batch written by hand (not by a packer): a label exists only
    where the next token continues the same piece (same document, position + 1, not padding);
    utilisation is real tokens over slots, 0.0 for an empty batch."""
    ids = torch.tensor([[10, 11, 12, 20, 21], [22, 23, 30, 0, 0]])
    pos = torch.tensor([[0, 1, 2, 0, 1], [0, 1, 0, 0, 1]])  # document 2 is cut between rows
    doc = torch.tensor([[0, 0, 0, 2, 2], [2, 2, 3, -1, -1]])
    b = PackedBatch(ids, pos, doc, n_tokens=8)
    want = []
    for r in range(2):
        row = []
        for t in range(5):
            ok = (t + 1 < 5 and doc[r, t] >= 0 and doc[r, t + 1] == doc[r, t]
                  and pos[r, t + 1] == pos[r, t] + 1)
            row.append(int(ids[r, t + 1]) if ok else -1)
        want.append(row)
    assert b.labels(ignore_index=-1).tolist() == want
    assert want == [[11, 12, -1, 21, -1], [23, -1, -1, -1, -1]]  # as read off the rows above
    assert b.utilisation == 8 / 10 and b.strategy == "concat" and b.pieces == []
    empty = PackedBatch(torch.zeros(0, 4, dtype=torch.long), torch.zeros(0, 4, dtype=torch.long),
                        torch.zeros(0, 4, dtype=torch.long))
    assert empty.utilisation == 0.0 and empty.labels().shape == (0, 4)


def test_unpack_keeps_empty_documents_including_trailing_ones():
    """Issue 19 item 16: without an eos_id an empty sample has no tokens and no piece; unpack
    still returns one (empty) list per sample, in place, also at the end."""
    samples = [[1, 2], [], [3], [], []]
    for strategy in ("concat", "best_fit"):
        b = pack_sequences(samples, 4, strategy=strategy)
        assert b.n_documents == 5
        assert unpack(b) == samples, strategy
    assert unpack(pack_sequences([[], []], 3)) == [[], []]


def test_token_ids_must_be_non_negative_integers_named_by_sample():
    """Float ids are refused (never truncated: 2.7 would silently become 2), negative ids too;
    the error names the sample and the token position. Integer-valued numpy/torch ids work."""
    import numpy as np

    with pytest.raises(ValueError, match=r"sample 1, token 2 is 2\.7 \(float\)"):
        pack_sequences([[1, 2], [4, 5, 2.7]], 4)
    with pytest.raises(ValueError, match=r"sample 0, token 1 is 3\.0"):
        pack_sequences([[1, 3.0]], 4)  # integral floats too: the caller's data is wrong
    with pytest.raises(ValueError, match=r"sample 2, token 0 is -1, a negative id"):
        pack_sequences([[1], [2], [-1, 5]], 4)
    with pytest.raises(ValueError, match=r"sample 0, token 0 .*not an integer"):
        pack_sequences([np.array([0.5, 1.0])], 4)
    with pytest.raises(ValueError, match=r"sample 0, token 1 is True"):
        pack_sequences([[1, True]], 4)
    b = pack_sequences([np.array([1, 2, 3]), torch.tensor([4, 5])], 4, eos_id=EOS)
    assert unpack(b) == [[1, 2, 3, EOS], [4, 5, EOS]]


def test_labels_follow_the_packed_rule():
    """PackedBatch.labels is qcoder_lib.packed.next_token_targets (plus padding ignored): the
    same targets as the training loop's rule, shifted into (N, L)."""
    from qcoder_lib import packed

    b = pack_sequences([[1, 2, 3, 4, 5], [6, 7], [8, 9, 10]], 4, eos_id=EOS, pad_id=0)
    want = packed.next_token_targets(b.input_ids, b.position_ids)
    want = want.masked_fill(b.document_ids[:, 1:] < 0, -100)
    assert torch.equal(b.labels()[:, :-1], want)
    assert bool((b.labels()[:, -1] == -100).all())
