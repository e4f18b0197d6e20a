"""The token mix: proportions within 2% of target, deterministic for a seed, shards readable."""

import hashlib
import random
from collections import Counter

import numpy as np
import pytest

from qcoder_lib.data.mix import ByteTokenizer, MixConfig, MixReport, group_streams, mix_sources
from qcoder_lib.data.shards import DocSpan, ShardWriter, TokenShards
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


def test_tokenizer_kinds_and_errors():
    with pytest.raises(TypeError, match="function.*transformers tokenizer"):
        mix_sources({"code": stream("code", 2, 1)}, None, tokenizer=lambda t: [1],
                    config=MixConfig(weights={"code": 1.0}))
    rep = mix_sources({"code": stream("code", 3, 1)}, None, tokenizer=ByteTokenizer(),
                      config=MixConfig(weights={"code": 1.0}))
    assert rep.tokenizer == "bytes" and rep.documents["code"] == 3
    with pytest.raises(ValueError, match="sum to 1"):
        MixConfig(weights={"code": 0.7, "text": 0.2})
    cfg = MixConfig()
    cfg.weights = {"code": 0.7, "text": 0.2}  # changed after construction: checked again
    with pytest.raises(ValueError, match="sum to 1"):
        mix_sources(streams(), None, config=cfg)
    with pytest.raises(KeyError, match="math"):
        mix_sources({"code": iter([]), "text": iter([])}, None)


@pytest.mark.parametrize(
    "field, value",
    [("shuffle_buffer", 0), ("encode_batch", 0), ("max_doc_tokens", 0), ("max_doc_tokens", -5),
     ("shard_tokens", 0), ("total_tokens", 0), ("shuffle_buffer", 2.5)],
)
def test_mix_config_names_the_bad_field(field, value):
    with pytest.raises(ValueError, match=rf"MixConfig\.{field}="):
        MixConfig(**{field: value})


def test_shuffle_buffer_of_one_keeps_every_document_in_stream_order():
    docs = list(stream("code", 12, 5))
    rep = mix_sources({"code": iter(docs)}, None,
                      config=MixConfig(weights={"code": 1.0}, shuffle_buffer=1, encode_batch=1))
    # against the documents themselves: one chunk each (all < 4096 bytes), eos included
    assert rep.documents["code"] == 12
    assert rep.total_tokens == sum(len(d.text.encode()) + 1 for d in docs)


def test_lone_surrogate_document_is_skipped_and_named(tmp_path):
    docs = list(stream("code", 5, 2))
    bad = Document("x = '\ud800'\n", "code", "bad.py", "r", "python")
    rep = mix_sources({"code": iter(docs[:2] + [bad] + docs[2:])}, tmp_path / "s",
                      config=MixConfig(weights={"code": 1.0}))
    assert rep.documents["code"] == 5 and rep.skipped == Counter({"lone_surrogate": 1})
    assert rep.skipped_examples["lone_surrogate"] == "r/bad.py (character 5)"
    assert {s.meta["path"] for s in TokenShards(tmp_path / "s").spans()} == {d.path for d in docs}


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


def _small_shards(folder, dtype="uint32"):
    w = ShardWriter(folder, shard_tokens=6, eos_id=9, tokenizer_name="toy", dtype=dtype)
    for i, ids in enumerate([[1, 2, 9], [3, 4, 5, 9], [6, 9]]):
        w.add(np.array(ids), {"path": f"d{i}"})
    return w.close()


def test_truncated_shard_names_the_file(tmp_path):
    _small_shards(tmp_path / "t")
    f = tmp_path / "t" / "shard_00001.bin"
    f.write_bytes(f.read_bytes()[:-3])  # a copy cut short
    with pytest.raises(ValueError, match=r"shard_00001\.bin holds 21 bytes.*24 bytes"):
        TokenShards(tmp_path / "t")
    f.unlink()
    with pytest.raises(FileNotFoundError, match=r"shard_00001\.bin"):
        TokenShards(tmp_path / "t")


@pytest.mark.parametrize(
    "text, match",
    [("{not json", "index.json is not valid JSON"), ("[1, 2]", "index.json holds a list"),
     ('{"dtype": "uint32"}', r"index.json lacks \['eos_id'"),
     ('{"dtype": "float32", "eos_id": 9, "tokenizer": "t", "shards": [], "total_tokens": 0}',
      "dtype 'float32'"),
     (('{"dtype": "uint32", "eos_id": 9, "tokenizer": "t", "shards": [{"file": "shard_00000.bin",'
       ' "tokens": 3}], "total_tokens": 5}'), "total_tokens=5 but the shards hold 3")],
)
def test_corrupt_index_names_the_file(tmp_path, text, match):
    _small_shards(tmp_path / "c")
    (tmp_path / "c" / "index.json").write_text(text)
    with pytest.raises(ValueError, match=match):
        TokenShards(tmp_path / "c")


@pytest.mark.parametrize(
    "line, match",
    [("{oops", r"documents\.jsonl:2 is not valid JSON"),
     ('{"shard": 0, "start": "0", "length": 3}', r"documents\.jsonl:2: expected an object"),
     ('{"shard": 5, "start": 0, "length": 3}', r"documents\.jsonl:2: shard 5 .* outside"),
     ('{"shard": 0, "start": 2, "length": 9}', r"documents\.jsonl:2: shard 0 start 2 .* outside")],
)
def test_corrupt_document_list_names_file_and_line(tmp_path, line, match):
    _small_shards(tmp_path / "d")
    p = tmp_path / "d" / "documents.jsonl"
    lines = p.read_text().splitlines()
    lines[1] = line
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=match):
        list(TokenShards(tmp_path / "d").spans())


def test_index_dtype_is_honoured(tmp_path):
    for dtype, size in (("uint16", 2), ("uint32", 4), ("int64", 8)):
        index = _small_shards(tmp_path / dtype, dtype)
        assert index["dtype"] == dtype
        assert (tmp_path / dtype / "shard_00000.bin").stat().st_size == 3 * size
        shards = TokenShards(tmp_path / dtype)
        assert shards.shard(0).dtype == np.dtype(dtype)
        assert [shards.document_ids(s).tolist() for s in shards.spans()] == [
            [1, 2, 9], [3, 4, 5, 9], [6, 9]]
    with pytest.raises(ValueError, match="do not fit the shards' dtype uint16"):
        ShardWriter(tmp_path / "x", eos_id=9, tokenizer_name="t", dtype="uint16").add(
            np.array([70_000, 9]), {"path": "big"})
    with pytest.raises(ValueError, match="dtype='float32'"):
        ShardWriter(tmp_path / "y", eos_id=9, tokenizer_name="t", dtype="float32")


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
