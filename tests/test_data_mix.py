"""The token mix: proportions within 2% of target, deterministic for a seed, shards readable."""

import hashlib
import random
from collections import Counter

import numpy as np
import pytest

from qcoder_lib.data.mix import ByteTokenizer, MixConfig, MixReport, group_streams, mix_sources
from qcoder_lib.data.shards import DocSpan, ShardWriter, TokenShards, packed_position_ids
from qcoder_lib.data.sources import Document


def stream(group, n, seed, lo=50, hi=3000):
    r = random.Random(seed)
    for i in range(n):
        k = r.randint(lo, hi)
        yield Document(
            f"{group} doc {i} " + "".join(r.choice("abcdefgh \n") for _ in range(k)),
            group,
            f"{group}/{i}",
            "r",
            "x",
        )


def streams(n=400, seed=0):
    return {
        "code": stream("code", n, seed),
        "text": stream("text", n, seed + 1),
        "math": stream("math", n, seed + 2),
    }


def digest(folder):
    return hashlib.sha256(
        b"".join(p.read_bytes() for p in sorted(folder.glob("shard_*.bin")))
    ).hexdigest()


@pytest.mark.parametrize(
    "weights", [{"code": 0.7, "text": 0.2, "math": 0.1}, {"code": 0.5, "text": 0.3, "math": 0.2}]
)
def test_mix_proportions_within_two_percent(tmp_path, weights):
    rep = mix_sources(streams(), tmp_path / "m", config=MixConfig(weights=weights, seed=1))
    for g, share in rep.achieved().items():
        assert abs(share - weights[g]) < 0.02, (g, share)
    assert rep.stopped_by.endswith("ran out")
    shards = TokenShards(tmp_path / "m")
    assert shards.total_tokens == rep.total_tokens
    assert sum(s.length for s in shards.spans()) == rep.total_tokens


def test_total_tokens_budget_and_document_roundtrip(tmp_path):
    docs = list(stream("code", 50, 7))
    rep = mix_sources(
        {"code": iter(docs)},
        tmp_path / "c",
        config=MixConfig(weights={"code": 1.0}, total_tokens=20_000, seed=0),
    )
    assert rep.stopped_by == "total_tokens" and 20_000 <= rep.total_tokens < 20_000 + 4097
    shards = TokenShards(tmp_path / "c")
    by_path = {d.path: d.text for d in docs}
    for span in shards.spans():
        ids = shards.document_ids(span)
        assert ids[-1] == ByteTokenizer.eos_id
        text = bytes(ids[:-1].astype(np.uint8)).decode("utf-8")
        assert text == by_path[span.meta["path"]][:4096] or span.meta["part"] > 0


def test_same_seed_same_bytes_other_seed_other_order(tmp_path):
    mix_sources(streams(), tmp_path / "a", config=MixConfig(seed=3))
    mix_sources(streams(), tmp_path / "b", config=MixConfig(seed=3))
    mix_sources(streams(), tmp_path / "c", config=MixConfig(seed=4))
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    assert digest(tmp_path / "a") != digest(tmp_path / "c")


def test_long_documents_are_chunked_and_shards_roll_over(tmp_path):
    big = [Document("z" * 10_000, "code", "big.py", "r", "python")]
    rep = mix_sources(
        {"code": iter(big)},
        tmp_path / "s",
        config=MixConfig(weights={"code": 1.0}, max_doc_tokens=3000, shard_tokens=5000),
    )
    assert rep.documents["code"] == 4  # 3000 + 3000 + 3000 + 1000
    shards = TokenShards(tmp_path / "s")
    sizes = [s["tokens"] for s in shards.index["shards"]]
    # 1001 shares a shard with the 3001 next to it, whatever the order: 3001+3001 > 5000
    assert sorted(sizes) == [3001, 3001, 4002]
    assert all(n <= 5000 for n in sizes) and sum(sizes) == 10_004
    assert rep.source_documents["code"] == 1


def test_tokenizer_callable_and_errors(tmp_path):
    calls = []

    def words_tok(text):
        calls.append(text)
        return [len(w) for w in text.split()]

    rep = mix_sources(
        {"code": stream("code", 20, 1)},
        None,
        tokenizer=words_tok,
        eos_id=0,
        config=MixConfig(weights={"code": 1.0}),
    )
    assert len(calls) == 20 and rep.tokenizer == "words_tok"
    with pytest.raises(ValueError, match="sum to 1"):
        mix_sources(streams(), None, config=MixConfig(weights={"code": 0.7, "text": 0.2}))
    with pytest.raises(KeyError, match="math"):
        mix_sources({"code": iter([]), "text": iter([])}, None)


def test_group_streams_and_sequences(tmp_path):
    g = group_streams(
        {
            "code": stream("code", 3, 0),
            "synthetic": stream("synthetic", 3, 1),
            "math": stream("math", 2, 2),
        }
    )
    assert [d.source for d in g["code"]] == ["code", "synthetic"] * 3
    with pytest.raises(KeyError, match="nonsense"):
        group_streams({"nonsense": iter([])})
    pos = packed_position_ids(np.array([5, 6, 256, 7, 8, 9, 256, 1]), 256)
    assert pos.tolist() == [0, 1, 2, 0, 1, 2, 3, 0]
    mix_sources(
        {"code": stream("code", 30, 0)}, tmp_path / "q", config=MixConfig(weights={"code": 1.0})
    )
    ids, p = next(TokenShards(tmp_path / "q").sequences(128, seed=0))
    assert ids.shape == p.shape == (129,)


def test_course_tokenizer_encodes_special_strings_in_data_as_text(tmp_path):
    from qcoder_lib.tokenizer import course_tokenizer

    tok = course_tokenizer("smoke")
    eot = tok.convert_tokens_to_ids("<|endoftext|>")
    doc = Document(
        's = "<|endoftext|>"  # a file that mentions the token\n', "code", "a.py", "r", "python"
    )
    rep = mix_sources(
        {"code": iter([doc])},
        tmp_path / "t",
        tokenizer=tok,
        config=MixConfig(weights={"code": 1.0}),
    )
    ids = TokenShards(tmp_path / "t").document_ids(next(TokenShards(tmp_path / "t").spans()))
    assert ids[-1] == eot and (ids[:-1] != eot).all()
    assert tok.decode(ids[:-1].tolist()) == doc.text
    assert "/" not in rep.tokenizer  # a name, never an absolute path


def test_shard_writer_rolls_over_and_reader_finds_every_document(tmp_path):
    out = tmp_path / "w"
    out.mkdir()
    (out / "shard_00007.bin").write_bytes(b"stale")  # left by an earlier, bigger run
    w = ShardWriter(out, shard_tokens=10, eos_id=99, tokenizer_name="toy")
    docs = [[1, 2, 3, 99], [4, 5, 6, 7, 8, 99], [9, 99], [10] * 14 + [99]]
    for i, ids in enumerate(docs):
        w.add(np.array(ids), {"path": f"d{i}"})
    index = w.close({"note": "extra"})
    assert not (out / "shard_00007.bin").exists()
    # 4 + 6 = 10 fits; 2 starts a new shard; 15 > 10 gets a shard of its own, never split
    assert [s["tokens"] for s in index["shards"]] == [10, 2, 15]
    assert index["total_tokens"] == 27 and index["note"] == "extra" and index["eos_id"] == 99
    shards = TokenShards(out)
    spans = list(shards.spans())
    assert spans[1] == DocSpan(shard=0, start=4, length=6, meta={"path": "d1"})
    assert [shards.document_ids(s).tolist() for s in spans] == docs
    assert shards.shard(2).dtype == np.uint32 and shards.total_tokens == 27


def test_token_shards_error_names_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="not_shards"):
        TokenShards(tmp_path / "not_shards")


def test_mix_report_shares_and_rows():
    rep = MixReport(target={"code": 0.7, "text": 0.3})
    assert rep.total_tokens == 0 and rep.achieved() == {"code": 0.0, "text": 0.0}
    rep.tokens = Counter({"code": 750, "text": 250})
    rep.documents = Counter({"code": 3, "text": 1})
    assert rep.total_tokens == 1000 and rep.achieved() == {"code": 0.75, "text": 0.25}
    assert rep.rows()[0] == {
        "group": "code",
        "target": 0.7,
        "achieved": 0.75,
        "tokens": 750,
        "documents": 3,
    }
