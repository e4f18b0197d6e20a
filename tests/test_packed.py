"""qcoder_lib.packed: the one packed-document rule, checked against transformers' own reading of
restarting position ids and against the numpy side used by the shards."""

import numpy as np
import pytest
import torch

from qcoder_lib import packed as P

POS = torch.tensor([[0, 1, 2, 0, 1, 0], [0, 1, 2, 3, 4, 5]])


def test_document_starts_and_ids():
    assert P.document_starts(POS).tolist() == [[True, False, False, True, False, True],
                                               [True, False, False, False, False, False]]
    assert P.document_ids(POS).tolist() == [[0, 0, 0, 1, 1, 2], [0, 0, 0, 0, 0, 0]]
    assert bool(P.is_packed(POS)) and not bool(P.is_packed(POS[1:]))
    # a continuation that does not restart at 0 (a document cut across rows) still counts
    assert P.document_ids(torch.tensor([[7, 8, 0, 1]])).tolist() == [[0, 0, 1, 1]]


def test_next_token_targets_do_not_cross_documents():
    ids = torch.arange(10, 16)[None]
    assert P.next_token_targets(ids, POS[:1]).tolist() == [[11, 12, -100, 14, -100]]
    assert P.next_token_targets(ids, POS[1:]).tolist() == [[11, 12, 13, 14, 15]]


def test_attention_mask_is_causal_within_documents():
    m = P.attention_mask(6, 6, doc_ids=P.document_ids(POS))
    assert m.shape == (2, 1, 6, 6)
    want = torch.zeros(6, 6, dtype=torch.bool)
    for a, b in ((0, 3), (3, 5), (5, 6)):
        want[a:b, a:b] = torch.ones(b - a, b - a, dtype=torch.bool).tril()
    assert torch.equal(m[0, 0], want)
    assert torch.equal(m[1, 0], torch.ones(6, 6, dtype=torch.bool).tril())
    assert P.attention_mask(3, 3, causal=False) is None
    # the last 2 queries of 6 keys (a KV cache): rows 4 and 5 of the full mask
    assert torch.equal(P.attention_mask(2, 6)[0, 0], torch.ones(6, 6, dtype=torch.bool).tril()[4:])
    pad = torch.tensor([[0, 1, 1]])  # left padding: the pad sees only itself
    assert P.attention_mask(3, 3, key_padding=pad)[0, 0].tolist() == [
        [True, False, False], [False, True, False], [False, True, True]]


def test_mask_matches_transformers_packed_rows():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=4, num_key_value_heads=2, attn_implementation="eager")
    model = Qwen2ForCausalLM(cfg).eval()
    ids = torch.randint(0, 50, (1, 6))
    with torch.no_grad():
        packed = model(input_ids=ids, position_ids=POS[:1], use_cache=False).logits
        # each document alone: the packed logits must equal them (no attention across documents)
        alone = [model(input_ids=ids[:, a:b], use_cache=False).logits for a, b in ((0, 3), (3, 5), (5, 6))]
    assert torch.allclose(packed, torch.cat(alone, dim=1), atol=1e-5)


def test_position_ids_from_eos_inverts_the_rule():
    ids = np.array([5, 6, 2, 7, 2, 2, 9])
    pos = P.position_ids_from_eos(ids, eos_id=2)
    assert pos.tolist() == [0, 1, 2, 0, 1, 0, 0]
    assert P.position_ids_from_eos(np.stack([ids, ids]), 2).tolist() == [pos.tolist()] * 2
    starts = P.document_starts(torch.from_numpy(pos)[None])[0]
    assert starts.tolist() == [True, False, False, True, False, True, True]


def test_doc_ids_from_cu_seqlens():
    assert P.doc_ids_from_cu_seqlens(torch.tensor([0, 2, 5, 8]), 2, 4).tolist() == [
        [0, 0, 1, 1], [1, 2, 2, 2]]
    with pytest.raises(ValueError, match="B\\*T=8"):
        P.doc_ids_from_cu_seqlens(torch.tensor([0, 3]), 2, 4)
    with pytest.raises(ValueError, match="non-decreasing"):
        P.doc_ids_from_cu_seqlens(torch.tensor([0, 5, 3, 8]), 2, 4)


def test_is_packed_needs_no_host_sync_and_compiles_without_graph_breaks():
    """is_packed is a 0-dim bool tensor (no bool() inside), so a compiled caller can branch on
    the device with torch.where; fullgraph=True fails on any graph break."""
    flag = P.is_packed(POS)
    assert isinstance(flag, torch.Tensor) and flag.shape == () and flag.dtype == torch.bool

    def doc_ids_or_zeros(pos):
        return torch.where(P.is_packed(pos), P.document_ids(pos), torch.zeros_like(pos))

    compiled = torch.compile(doc_ids_or_zeros, fullgraph=True, backend="eager")
    assert torch.equal(compiled(POS), doc_ids_or_zeros(POS))
    assert compiled(POS[1:]).tolist() == [[0] * 6]
    torch._dynamo.reset()


def test_attention_mask_follows_the_ids_device():
    """Without ``device`` the mask is built where doc_ids (or key_padding) live (meta here, a
    stand-in for a GPU), never on the CPU beside them."""
    ids = torch.zeros(1, 4, dtype=torch.long, device="meta")
    assert P.attention_mask(4, 4, doc_ids=ids).device.type == "meta"
    assert P.attention_mask(2, 4, key_padding=ids).device.type == "meta"
