"""Pretraining: the loop, its rows, its checkpoints, and what it reports.

- :mod:`.config`: :class:`TrainConfig` (one comment per field) and the schedule :func:`lr_at`;
- :mod:`.rows`: :class:`ShardRows` (lazy rows over the memory-mapped token shards, held-out split
  by document) and :class:`TokenRows` (rows in memory);
- :mod:`.checkpoint`: atomic checkpoints (save, load, list, rotate) and the ``final/`` export;
- :mod:`.progress`: tokens/s, MFU, bits per byte, the tqdm bar;
- :mod:`.loop`: :func:`train` and :func:`evaluate`;
- :mod:`.probes`: single-line infilling exact match and the share of completions that parse;
- :mod:`.recipe`: the whole pretraining stage of a profile (corpus, FIM, model, train, export),
  as notebook 06 and ``qcoder pretrain`` run it.
"""

from qcoder_lib.train.checkpoint import (
    CheckpointError,
    checkpoint_bytes,
    list_checkpoints,
    load_checkpoint,
    rng_state,
    rotate_checkpoints,
    save_checkpoint,
    save_final,
    set_rng_state,
)
from qcoder_lib.train.config import TrainConfig, lr_at
from qcoder_lib.train.loop import (
    EvalResult,
    TrainingInterrupted,
    TrainResult,
    check_out_dir,
    check_vocab,
    eval_row_indices,
    evaluate,
    load_state,
    make_optimizer,
    param_groups,
    rank_rows,
    read_training_log,
    reduce_for_logging,
    save_state,
    train,
    wrap_model,
)
from qcoder_lib.train.progress import (
    ProgressBar,
    bits_per_byte,
    format_mfu,
    mfu,
    peak_flops,
    token_byte_lengths,
)
from qcoder_lib.train.rows import Rows, ShardRows, TokenRows, as_rows, held_out_mask

__all__ = [
    "CheckpointError", "EvalResult", "ProgressBar", "Rows", "ShardRows", "TokenRows",
    "TrainConfig", "TrainResult", "TrainingInterrupted", "as_rows", "bits_per_byte", "check_out_dir", "check_vocab",
    "checkpoint_bytes", "eval_row_indices", "evaluate", "format_mfu", "held_out_mask", "list_checkpoints", "load_checkpoint",
    "load_state", "lr_at", "make_optimizer", "mfu", "param_groups", "peak_flops", "rank_rows",
    "read_training_log", "reduce_for_logging", "rng_state", "rotate_checkpoints",
    "save_checkpoint", "save_final", "save_state", "set_rng_state", "token_byte_lengths",
    "train", "wrap_model",
]
