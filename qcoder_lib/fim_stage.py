"""FIM as a corpus stage: token shards in, token shards with FIM samples out, from token ids.

The mixed corpus (notebook 04) is already tokenized. Turning a document into a FIM sample needs
no text: cut its ids at two positions drawn uniformly among its token boundaries and rearrange
the pieces around the special ids (PSM, Qwen2.5-Coder's format)::

    <|fim_prefix|> pre <|fim_suffix|> suf <|fim_middle|> mid <|endoftext|>

or, as an option, SPM (the FIM paper's variant): ``<|fim_prefix|><|fim_suffix|> suf
<|fim_middle|> pre mid <|endoftext|>``. No decode / re-encode round trip, so nothing about the
text can change and the stage runs at the speed of copying ids. The cuts fall on token boundaries
(the FIM paper draws character positions on text; from ids, token boundaries are the cut points
that exist). By default only code documents are rearranged (:func:`qcoder_lib.fim.is_code`);
prose and math stay left-to-right.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qcoder_lib.fim import ENDOFTEXT, FIM_MIDDLE, FIM_PREFIX, FIM_SUFFIX, FIMConfig, is_code


@dataclass
class FIMStageReport:
    """What :func:`fim_shards` wrote."""

    documents: int = 0  # documents read (= written)
    code_documents: int = 0  # documents FIM could apply to
    fim: int = 0  # documents turned into FIM samples
    spm: int = 0  # of those, in SPM order
    tokens_in: int = 0  # tokens read, end-of-text included
    tokens_out: int = 0  # tokens written (3 more per FIM sample)

    @property
    def fim_rate(self) -> float:
        """Achieved FIM share among the code documents."""
        return self.fim / max(self.code_documents, 1)


def fim_ids(ids, rng: random.Random, config: FIMConfig, special: dict) -> tuple[list[int], str]:
    """One document's ids (without its end-of-text) -> ``(sample ids ending with end-of-text,
    mode)``. Draws in a fixed order (FIM?, SPM?, two cuts), so one seed repeats."""
    ids = [int(t) for t in ids]
    P, S, M, E = (special[k] for k in (FIM_PREFIX, FIM_SUFFIX, FIM_MIDDLE, ENDOFTEXT))
    do_fim = rng.random() < config.fim_rate
    spm = rng.random() < config.spm_rate
    if not do_fim:
        return ids + [E], "plain"
    a, b = rng.randint(0, len(ids)), rng.randint(0, len(ids))
    i, j = min(a, b), max(a, b)
    pre, mid, suf = ids[:i], ids[i:j], ids[j:]
    if spm:
        return [P, S, *suf, M, *pre, *mid, E], "spm"
    return [P, *pre, S, *suf, M, *mid, E], "psm"


def fim_shards(src, dst, tokenizer, config: FIMConfig | None = None, *, seed: int = 0,
               shard_tokens: int = 1 << 24) -> FIMStageReport:
    """Read the token shards in ``src`` and write them to ``dst`` with FIM applied to each
    document (code only by default), keeping every document's metadata (plus ``"fim"``: its
    mode). ``tokenizer`` gives the special ids (a tokenizer, or a dict token -> id)."""
    from qcoder_lib.data.shards import ShardWriter, TokenShards
    from qcoder_lib.fim import fim_token_ids

    config = config or FIMConfig()
    if config.span != "random":
        raise ValueError(f"fim_shards: FIMConfig.span={config.span!r}; the token-id stage cuts "
                         "random spans (syntax spans need the text: use apply_fim)")
    special = dict(tokenizer) if isinstance(tokenizer, dict) else fim_token_ids(tokenizer)
    src, dst = Path(src), Path(dst)
    if src.resolve() == dst.resolve():
        raise ValueError(f"fim_shards: source and destination are the same folder {src}")
    shards = TokenShards(src)
    if shards.eos_id != special[ENDOFTEXT]:
        raise ValueError(f"fim_shards: {src} ends documents with id {shards.eos_id} but the "
                         f"tokenizer's {ENDOFTEXT} is {special[ENDOFTEXT]}")
    writer = ShardWriter(dst, shard_tokens=shard_tokens, eos_id=shards.eos_id,
                         tokenizer_name=shards.index.get("tokenizer", ""))
    rng = random.Random(seed)
    plain = FIMConfig(fim_rate=0.0)
    rep = FIMStageReport()
    for span in shards.spans():
        doc = shards.document_ids(span)  # (length,) memory-mapped, end-of-text last
        code = is_code(span.meta)
        cfg = config if code or not config.code_only else plain
        out, mode = fim_ids(doc[:-1], rng, cfg, special)
        writer.add(np.asarray(out), {**span.meta, "fim": mode})
        rep.documents += 1
        rep.code_documents += code or not config.code_only
        rep.fim += mode != "plain"
        rep.spm += mode == "spm"
        rep.tokens_in += len(doc)
        rep.tokens_out += len(out)
    writer.close({"fim": {"fim_rate": config.fim_rate, "spm_rate": config.spm_rate,
                          "code_only": config.code_only, "seed": seed}})
    return rep
