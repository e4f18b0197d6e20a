"""ChatML token ids and the loss labels of SFT: the loss falls only on what the assistant says.

Ids come from :func:`qcoder_lib.tokenizer.encode_chat` (special tokens by id, text as data; the
same ids as the tokenizer's chat template). Labels equal the ids on each assistant turn's
content, its ``<|im_end|>`` and the newline after it, and are ``IGNORE_INDEX`` elsewhere (system
and user turns, every ``<|im_start|>role\\n`` header). That is the facts file's rule.

Qwen2.5-Coder's official ``binarize_data.py`` differs in two details, offered as options:
it also keeps ``<|im_start|>``, ``<|im_end|>`` and the newline of every turn in the labels
(``structure_tokens=True``), and it trains on the last assistant turn only unless a record says
otherwise (``only_last_turn=True``).
"""

from __future__ import annotations

from qcoder_lib.packed import IGNORE_INDEX
from qcoder_lib.tokenizer import DEFAULT_SYSTEM_PROMPT, encode_chat, encode_data, special_id


def chat_labels(tokenizer, messages: list[dict], *, system_prompt: str = DEFAULT_SYSTEM_PROMPT,
                only_last_turn: bool = False,
                structure_tokens: bool = False) -> tuple[list[int], list[int]]:
    """``(ids, labels)`` of a conversation (any number of turns; Qwen's default system prompt
    when the first message is not a system one). ``labels[i]`` is ``ids[i]`` where the loss is
    taken and ``IGNORE_INDEX`` elsewhere; targets are not shifted (the model at position
    ``i - 1`` predicts ``labels[i]``)."""
    ids = encode_chat(tokenizer, messages, system_prompt=system_prompt)
    start, end = special_id(tokenizer, "<|im_start|>"), special_id(tokenizer, "<|im_end|>")
    roles = [m["role"] for m in messages]
    if not roles or roles[0] != "system":
        roles.insert(0, "system")
    starts = [i for i, t in enumerate(ids) if t == start]
    ends = [i for i, t in enumerate(ids) if t == end]
    if len(starts) != len(roles) or len(ends) != len(roles):
        raise ValueError(f"chat_labels: {len(roles)} turns but {len(starts)} <|im_start|> and "
                         f"{len(ends)} <|im_end|> ids in the encoded conversation")
    labels = [IGNORE_INDEX] * len(ids)
    last_assistant = max((k for k, r in enumerate(roles) if r == "assistant"), default=-1)
    header = encode_data(tokenizer, "assistant\n")
    for k, role in enumerate(roles):
        s, e = starts[k], ends[k]
        turn_end = starts[k + 1] if k + 1 < len(roles) else len(ids)  # after "<|im_end|>\n"
        trained = role == "assistant" and (not only_last_turn or k == last_assistant)
        if trained:
            body = ids[s + 1 : e]
            n = 0  # header tokens to skip; a content that starts with a newline may merge
            while n < len(header) and n < len(body) and body[n] == header[n]:
                n += 1
            for i in range(s + 1 + n, turn_end):
                labels[i] = ids[i]
        if structure_tokens:
            labels[s] = ids[s]
            for i in range(e, turn_end):
                labels[i] = ids[i]
    return ids, labels


def mask_segments(tokenizer, ids: list[int], labels: list[int]) -> list[tuple[str, bool]]:
    """The conversation as ``(text, trained)`` runs of consecutive tokens with the same label
    state: what a notebook draws to show the loss mask."""
    out: list[tuple[str, bool]] = []
    run: list[int] = []
    state = None
    for t, lab in zip(ids, labels):
        on = lab != IGNORE_INDEX
        if state is not None and on != state:
            out.append((tokenizer.decode(run), state))
            run = []
        run.append(t)
        state = on
    if run:
        out.append((tokenizer.decode(run), bool(state)))
    return out
