"""FIM as a corpus stage over token shards: from ids, code documents only, nothing lost."""

import numpy as np
import pytest

from qcoder_lib.data.shards import ShardWriter, TokenShards
from qcoder_lib.fim import FIMConfig
from qcoder_lib.fim_stage import fim_ids, fim_shards

EOS, P, S, M = 100, 101, 102, 103
SPECIAL = {"<|endoftext|>": EOS, "<|fim_prefix|>": P, "<|fim_suffix|>": S, "<|fim_middle|>": M}


def corpus(folder, n=300, seed=0):
    rng = np.random.default_rng(seed)
    w = ShardWriter(folder, shard_tokens=500, eos_id=EOS, tokenizer_name="toy")
    docs = []
    for i in range(n):
        group = ["code", "text", "math"][i % 3]
        ids = rng.integers(0, 100, rng.integers(0, 30)).tolist()
        docs.append((group, ids))
        w.add(np.array(ids + [EOS]), {"group": group, "doc": i})
    w.close()
    return docs


def undo(ids):
    """The original document from a sample, read straight from the format definitions."""
    assert ids[-1] == EOS
    ids = ids[:-1]
    if not ids or ids[0] != P:
        return ids, "plain"
    s, m = ids.index(S), ids.index(M)
    if s == 1:  # SPM: <P><S> suf <M> pre mid
        return ids[m + 1:] + ids[2:m], "spm"
    return ids[1:s] + ids[m + 1:] + ids[s + 1:m], "psm"


@pytest.mark.parametrize("spm_rate", [0.0, 0.5])
def test_fim_stage_rearranges_code_documents_only(tmp_path, spm_rate):
    docs = corpus(tmp_path / "in")
    rep = fim_shards(tmp_path / "in", tmp_path / "out", SPECIAL,
                     FIMConfig(fim_rate=0.5, spm_rate=spm_rate), seed=3)
    out = TokenShards(tmp_path / "out")
    spans = list(out.spans())
    assert len(spans) == len(docs) == rep.documents
    modes = []
    for (group, ids), span in zip(docs, spans):
        sample = out.document_ids(span).tolist()
        original, mode = undo(sample)
        assert original == ids and span.meta["group"] == group
        # a PSM sample with an empty prefix has exactly the ids of an SPM one
        assert span.meta["fim"] == mode or (mode, span.meta["fim"]) == ("spm", "psm")
        mode = span.meta["fim"]
        if group != "code":
            assert mode == "plain"
        modes.append(mode)
    code_modes = [m for (g, _), m in zip(docs, modes) if g == "code"]
    assert rep.code_documents == len(code_modes) == 100
    assert 0.35 < rep.fim_rate < 0.65 and rep.fim == sum(m != "plain" for m in code_modes)
    assert (rep.spm > 10) == (spm_rate > 0) and rep.spm == modes.count("spm")
    assert rep.tokens_out == rep.tokens_in + 3 * rep.fim == out.total_tokens
    again = fim_shards(tmp_path / "in", tmp_path / "again", SPECIAL,
                       FIMConfig(fim_rate=0.5, spm_rate=spm_rate), seed=3)
    assert again == rep  # one seed, one corpus


def test_fim_ids_cuts_are_uniform_over_token_boundaries():
    import random

    rng = random.Random(0)
    starts = np.zeros(6)
    for _ in range(6000):
        ids, mode = fim_ids([1, 2, 3, 4, 5], rng, FIMConfig(fim_rate=1.0), SPECIAL)
        assert mode == "psm"
        starts[ids.index(S) - 1] += 1  # prefix length 0..5
    # two uniform draws over 6 boundaries: P(min = k) = ((6-k)^2 - (5-k)^2) / 36
    want = np.array([((6 - k) ** 2 - (5 - k) ** 2) / 36 for k in range(6)]) * 6000
    assert np.abs(starts - want).max() < 5 * np.sqrt(want).max()


def test_fim_stage_refuses_bad_inputs(tmp_path):
    corpus(tmp_path / "in", n=5)
    with pytest.raises(ValueError, match="same folder"):
        fim_shards(tmp_path / "in", tmp_path / "in", SPECIAL)
    with pytest.raises(ValueError, match="ends documents with id 100"):
        fim_shards(tmp_path / "in", tmp_path / "o", {**SPECIAL, "<|endoftext|>": 7})
    with pytest.raises(ValueError, match="span"):
        fim_shards(tmp_path / "in", tmp_path / "o", SPECIAL, FIMConfig(span="syntax"))
