"""Training rows read lazily from token shards, the held-out split by document, and what a run
reports (bits per byte, MFU, the progress bar)."""

import math

import numpy as np
import pytest
import torch

from qcoder_lib.data.shards import ShardWriter
from qcoder_lib.train import (
    ProgressBar,
    ShardRows,
    TokenRows,
    as_rows,
    bits_per_byte,
    check_vocab,
    eval_row_indices,
    evaluate,
    format_mfu,
    held_out_mask,
    mfu,
    peak_flops,
    token_byte_lengths,
)
from tests.test_train import EOS, counting_docs, tiny_model


def write_shards(folder, docs, shard_tokens=100):
    w = ShardWriter(folder, shard_tokens=shard_tokens, eos_id=EOS, tokenizer_name="toy")
    for i, d in enumerate(docs):
        w.add(np.array(d), {"group": "code", "doc": i})
    w.close()
    return folder


def reference_rows(docs, T):
    """The in-memory path, written out plainly: concatenate, cut windows of T+1 with stride T,
    positions restart after each end-of-text, no target across a document start."""
    stream = [t for d in docs for t in d]
    n = (len(stream) - 1) // T
    ids, pos, tgt = [], [], []
    for r in range(n):
        w = stream[r * T : r * T + T + 1]
        p, k = [], 0
        for j, t in enumerate(w):
            p.append(k)
            k = 0 if t == EOS else k + 1
        ids.append(w[:-1])
        pos.append(p[:-1])
        tgt.append([w[j + 1] if p[j + 1] == p[j] + 1 else -100 for j in range(T)])
    return torch.tensor(ids), torch.tensor(pos), torch.tensor(tgt)


def test_streaming_rows_equal_the_in_memory_rows(tmp_path):
    docs = counting_docs(80)
    rows = ShardRows(write_shards(tmp_path / "s", docs), 32)
    assert len(rows.shards.index["shards"]) > 5  # documents spread over many shards
    ids, pos, tgt = reference_rows(docs, 32)
    got = rows.get(list(range(len(rows))))
    assert len(rows) == len(ids)
    for a, b in zip(got, (ids, pos, tgt)):
        assert torch.equal(a, b)
    memory = TokenRows(ids, pos, tgt)  # the same rows in the same seeded order
    for a, b in zip(rows.rows_at(37, 50, seed=3), memory.rows_at(37, 50, seed=3)):
        assert torch.equal(a, b)
    assert isinstance(as_rows(str(tmp_path / "s"), 32), ShardRows)


def test_held_out_split_is_by_document(tmp_path):
    docs = counting_docs(80)
    rows = ShardRows(write_shards(tmp_path / "s", docs), 32)
    train_rows, held = rows.split(0.2, seed=1)
    key = lambda d: (d.shard, d.start)
    a, b = {key(d) for d in train_rows.documents}, {key(d) for d in held.documents}
    assert not a & b and len(a | b) == len(docs) and 5 <= len(b) <= 30
    # the held-out stream is exactly the held-out documents back to back
    held_ids = [t for d in held.documents for t in docs[d.meta["doc"]]]
    assert held.tokens(0, held.total_tokens).tolist() == held_ids
    assert train_rows.total_tokens + held.total_tokens == sum(map(len, docs))
    assert [key(d) for d in rows.split(0.2, seed=1)[1].documents] == [key(d) for d in held.documents]
    with pytest.raises(ValueError, match="held_out"):
        rows.split(1.0)
    mask = held_out_mask(len(docs), 0.2, seed=1)  # the same documents, whatever the folder
    assert [d.meta["doc"] for d in held.documents] == np.flatnonzero(mask).tolist()


def test_token_ids_beyond_the_vocabulary_are_refused_once(tmp_path):
    docs = counting_docs(20) + [[5, 64, 7, EOS]]  # id 64 does not exist in a 64-row model
    rows = ShardRows(write_shards(tmp_path / "s", docs), 16)
    assert rows.max_token_id() == 64
    with pytest.raises(ValueError, match=r"token id 64 .* 64 rows"):
        check_vocab(rows, tiny_model())
    check_vocab(rows, tiny_model(vocab=128))
    with pytest.raises(FileNotFoundError, match="nowhere"):
        ShardRows(tmp_path / "nowhere", 16)


def test_bits_per_byte_counts_the_bytes_of_the_scored_tokens():
    from qcoder_lib.tokenizer import train_tokenizer

    text = "def add(a, b):\n    return a + b  # é ü 中\n"
    tok = train_tokenizer([text] * 20, 300)
    lengths = token_byte_lengths(tok)
    ids = tok.encode(text)
    assert int(lengths[ids].sum()) == len(text.encode("utf-8"))
    assert bits_per_byte(math.log(2) * 10, 5) == pytest.approx(2.0)

    model = tiny_model(vocab=-(-len(tok) // 64) * 64)
    T = 16
    stream = (ids * 4)[: 3 * T + 1]
    windows = torch.tensor([stream[r * T : r * T + T + 1] for r in range(3)])
    rows = TokenRows.from_windows(windows, torch.arange(T + 1).expand(3, T + 1))
    res = evaluate(model, rows, batch_size=2, token_bytes=lengths)
    with torch.no_grad():
        logits = model(rows.input_ids, rows.position_ids)
        nats = torch.nn.functional.cross_entropy(logits.flatten(0, 1), rows.targets.flatten(),
                                                 reduction="sum").item()
    n_bytes = int(lengths[rows.targets.flatten().numpy()].sum())
    assert res.tokens == 3 * T
    assert res.loss == pytest.approx(nats / (3 * T), rel=1e-5)
    assert res.bits_per_byte == pytest.approx(nats / math.log(2) / n_bytes, rel=1e-5)


def test_evaluate_scores_rows_spread_over_the_held_out_set():
    assert eval_row_indices(10) == list(range(10)) == eval_row_indices(10, 50)
    assert eval_row_indices(100, 4) == [0, 25, 50, 75]
    torch.manual_seed(0)
    model = tiny_model(vocab=64)
    T = 8
    windows = torch.randint(0, 64, (12, T + 1))
    rows = TokenRows.from_windows(windows, torch.arange(T + 1).expand(12, T + 1))
    picked = [0, 3, 6, 9]
    res = evaluate(model, rows, batch_size=3, max_rows=4)
    with torch.no_grad():
        ids, pos, tgt = rows.get(picked)
        nats = torch.nn.functional.cross_entropy(model(ids, pos).flatten(0, 1), tgt.flatten(),
                                                 reduction="sum").item()
    assert res.tokens == 4 * T
    assert res.loss == pytest.approx(nats / (4 * T), rel=1e-5)
    first = evaluate(model, TokenRows.from_windows(windows[:4], torch.arange(T + 1).expand(4, T + 1)))
    assert abs(first.loss - res.loss) > 1e-6  # not the first four rows


def test_mfu_is_na_on_cpu_and_the_bar_counts_steps():
    assert peak_flops("cpu") is None and mfu(1000.0, 6e6, None) is None
    assert format_mfu(None) == "n/a"
    assert mfu(1e6, 6e8, 1e15) == pytest.approx(0.6) and format_mfu(0.6) == "60.0%"
    bar = ProgressBar(total=5, initial=2, enabled=True, desc="test")
    for _ in range(3):
        bar.update(1.5, 1000.0, None, eval_loss=2.0)
    assert bar.bar.n == 5 and "n/a" in str(bar.bar.postfix)
    bar.close()
    ProgressBar(3, 0, enabled=False).update(1.0, 1.0, None)  # disabled: a no-op
