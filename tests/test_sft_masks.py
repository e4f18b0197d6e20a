"""qcoder_lib.sft.masks: ChatML ids equal the chat template's; labels exactly on assistant turns."""

import pytest

from qcoder_lib.packed import IGNORE_INDEX
from qcoder_lib.sft.masks import chat_labels, mask_segments
from qcoder_lib.tokenizer import course_tokenizer, encode_data, special_id

CONV = [
    {"role": "user", "content": "Write add."},
    {"role": "assistant", "content": "def add(a, b):\n    return a + b"},
    {"role": "user", "content": "And in Rust?"},
    {"role": "assistant", "content": "\nfn add(a: i32, b: i32) -> i32 { a + b }"},
]


@pytest.fixture(scope="module")
def tok():
    return course_tokenizer("smoke")


def test_ids_equal_apply_chat_template(tok):
    for conv in (CONV, [{"role": "system", "content": "Be terse."}] + CONV):
        ids, _ = chat_labels(tok, conv)
        ref = tok.apply_chat_template(conv, tokenize=True, return_dict=False)
        assert ids == ref
        assert tok.decode(ids) == tok.apply_chat_template(conv, tokenize=False)


def test_split_special_tokens_trap_needs_the_per_call_option(tok, tmp_path):
    from transformers import AutoTokenizer

    tok.save_pretrained(tmp_path)
    split = AutoTokenizer.from_pretrained(tmp_path, split_special_tokens=True)
    ids, _ = chat_labels(tok, CONV)
    broken = split.apply_chat_template(CONV, tokenize=True, return_dict=False)
    assert special_id(tok, "<|im_start|>") not in broken  # the markers became plain text
    fixed = split.apply_chat_template(CONV, tokenize=True, return_dict=False,
                                      tokenizer_kwargs={"split_special_tokens": False})
    assert fixed == ids


def test_labels_exactly_on_assistant_content_im_end_and_newline(tok):
    ids, labels = chat_labels(tok, CONV)
    assert len(ids) == len(labels)
    end, nl = special_id(tok, "<|im_end|>"), encode_data(tok, "\n")
    trained = [i for i, x in enumerate(labels) if x != IGNORE_INDEX]
    assert all(labels[i] == ids[i] for i in trained)
    # independent construction of the expected labelled ids, turn by turn
    first = encode_data(tok, CONV[1]["content"]) + [end] + nl
    assert [ids[i] for i in trained[:len(first)]] == first
    runs = [(t, on) for t, on in mask_segments(tok, ids, labels) if on]
    assert [t for t, _ in runs] == [CONV[1]["content"] + "<|im_end|>\n",
                                    "\n" + CONV[3]["content"] + "<|im_end|>\n"]
    # every header, system and user token is ignored
    header = encode_data(tok, "assistant\n")
    start = special_id(tok, "<|im_start|>")
    for i, t in enumerate(ids):
        if t == start:
            assert labels[i] == IGNORE_INDEX
            assert labels[i + 1] == IGNORE_INDEX  # the role
    second = [i for i in trained if i > trained[len(first) - 1] + 1]
    assert tok.decode([ids[i] for i in second]) == "\n" + CONV[3]["content"] + "<|im_end|>\n"
    assert trained == list(range(trained[0], trained[0] + len(first))) + second
    a2 = [i for i, t in enumerate(ids) if t == start][2]  # the first assistant turn's start
    assert ids[a2 + 1:a2 + 1 + len(header)] == header and trained[0] == a2 + 1 + len(header)


def test_only_last_turn_and_structure_tokens(tok):
    ids, full = chat_labels(tok, CONV)
    _, last = chat_labels(tok, CONV, only_last_turn=True)
    on_full = [i for i, x in enumerate(full) if x != IGNORE_INDEX]
    on_last = [i for i, x in enumerate(last) if x != IGNORE_INDEX]
    assert set(on_last) < set(on_full) and min(on_last) > ids.index(special_id(tok, "<|im_end|>"), on_full[0])
    _, qwen = chat_labels(tok, CONV, structure_tokens=True)
    start, end = special_id(tok, "<|im_start|>"), special_id(tok, "<|im_end|>")
    for i, t in enumerate(ids):
        if t in (start, end):
            assert qwen[i] == t  # Qwen's script keeps every turn's markers
    assert sum(x != IGNORE_INDEX for x in qwen) > len(on_full)
    with pytest.raises(ValueError, match="tool"):
        chat_labels(tok, [{"role": "tool", "content": "x"}])
