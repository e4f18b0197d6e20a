"""File- and repository-level fill-in-the-middle: format, inverse, special tokens, rates."""

from __future__ import annotations

import random
import unicodedata

import pytest
import regex
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qcoder_lib.course.display import render_html
from qcoder_lib.fim import (
    FIM_STOP_TOKENS,
    FIMConfig,
    FIMSample,
    FIMStats,
    apply_fim,
    build_ids,
    choose_span,
    fim_documents,
    fim_prompt_ids,
    fim_token_ids,
    grapheme_boundaries,
    is_code,
    random_split,
    split_fim_ids,
    unfim,
)
from qcoder_lib.fim_repo import RepoSample, order_context_files, repo_fim, unfim_repo
from qcoder_lib.syntax_spans import EXAMPLE_CODE
from qcoder_lib.tokenizer import SPECIAL_TOKENS, decode, special_ids, train_tokenizer

SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def tok():
    """A small byte-level BPE tokenizer trained with the course's real trainer."""
    corpus = list(EXAMPLE_CODE.values()) * 3 + ["Fill in the middle of the code. Ünïcödé 中文 ✓"]
    return train_tokenizer(corpus, 400)


SPECIAL_STRINGS = list(SPECIAL_TOKENS)
CODE_BITS = ["def f(x):\n", "    return x + 1\n", "{", "}", "\r\n", "\t", "é", "e\u0301", "😀",
             "中文", "# comment\n", "'''", '"', "\\", " ", "\n"]
# arbitrary unicode, code-like text with special-token strings inside, and the empty document
documents = st.one_of(
    st.text(),
    st.lists(st.one_of(st.sampled_from(CODE_BITS + SPECIAL_STRINGS), st.text(max_size=5)),
             max_size=30).map("".join),
    st.just(""),
)


def all_special_ids(tok) -> set[int]:
    return set(special_ids(tok).values())


def expected_text(mode: str, pre: str, mid: str, suf: str) -> str:
    """The sample written as a string, straight from the format definitions."""
    if mode == "psm":
        return f"<|fim_prefix|>{pre}<|fim_suffix|>{suf}<|fim_middle|>{mid}<|endoftext|>"
    if mode == "spm":
        return f"<|fim_prefix|><|fim_suffix|>{suf}<|fim_middle|>{pre}{mid}<|endoftext|>"
    return f"{pre}<|endoftext|>"


@SETTINGS
@given(x=documents, seed=st.integers(0, 2**32), mode=st.sampled_from(["psm", "spm", "plain"]))
def test_unfim_inverts_fim_and_specials_are_exact(tok, x, seed, mode):
    cfg = FIMConfig(fim_rate=0.0 if mode == "plain" else 1.0, spm_rate=1.0 if mode == "spm" else 0.0)
    s = apply_fim(x, tok, random.Random(seed), cfg)
    nfc = unicodedata.normalize("NFC", x)
    assert s.mode == mode
    assert unfim(s, tok) == nfc  # == x for text already in NFC
    assert unfim(s.input_ids, tok) == decode(tok, tok.encode(x, add_special_tokens=False,
                                                             split_special_tokens=True))
    assert s.prefix + s.middle + s.suffix == nfc
    # the layout, read back through the tokenizer's own decode
    assert decode(tok, s.input_ids) == expected_text(mode, s.prefix, s.middle, s.suffix)
    # exactly the format's special tokens, where the format puts them; none from the text
    sp = fim_token_ids(tok)
    specials = [t for t in s.input_ids if t in all_special_ids(tok)]
    want = {"psm": ["<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", "<|endoftext|>"],
            "spm": ["<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", "<|endoftext|>"],
            "plain": ["<|endoftext|>"]}[mode]
    assert specials == [sp[n] for n in want]
    assert s.input_ids[-1] == sp["<|endoftext|>"]
    if mode != "plain":
        assert s.input_ids[0] == sp["<|fim_prefix|>"]
    # the cuts never split a grapheme cluster (a character and its combining marks stay whole)
    g = regex.findall(r"\X", nfc)
    assert regex.findall(r"\X", s.prefix) + regex.findall(r"\X", s.middle) + regex.findall(
        r"\X", s.suffix) == g


def test_special_token_strings_in_data_stay_text(tok):
    x = "a = '<|endoftext|>'  # <|fim_middle|><|file_sep|>\n"
    for mode in ("psm", "spm", "plain"):
        cfg = FIMConfig(fim_rate=0.0 if mode == "plain" else 1.0, spm_rate=float(mode == "spm"))
        s = apply_fim(x, tok, random.Random(3), cfg)
        n_special = sum(t in all_special_ids(tok) for t in s.input_ids)
        assert n_special == (1 if mode == "plain" else 4)
        assert unfim(s, tok) == x


def test_lone_surrogate_is_refused(tok):
    with pytest.raises(ValueError, match="surrogate"):
        apply_fim("ok \ud800 no", tok, random.Random(0), FIMConfig(fim_rate=1.0))


@pytest.mark.parametrize("fim_rate,spm_rate", [(0.5, 0.5), (0.9, 0.1), (0.1, 0.8)])
def test_achieved_rates_converge_to_configured(tok, fim_rate, spm_rate):
    n = 4000
    stats = FIMStats()
    rng = random.Random(fim_rate * 1000 + spm_rate)
    cfg = FIMConfig(fim_rate=fim_rate, spm_rate=spm_rate)
    for i in range(n):
        apply_fim("xy" * (i % 5), tok, rng, cfg, stats=stats)
    assert stats.documents == n
    # 4.5 binomial standard deviations: a wrong rate fails, a right one fails ~1e-5 of seeds
    assert abs(stats.fim_rate - fim_rate) < 4.5 * (fim_rate * (1 - fim_rate) / n) ** 0.5
    n_fim = stats.fim
    assert abs(stats.spm_rate - spm_rate) < 4.5 * (spm_rate * (1 - spm_rate) / n_fim) ** 0.5


def test_random_split_is_uniform_over_positions():
    # two independent uniform positions, sorted: E[min] = n/3, E[max] = 2n/3 (continuous limit)
    text, rng, n = "abcdefghij" * 9, random.Random(0), 20000
    cuts = [random_split(text, rng) for _ in range(n)]
    lo = sum(i for i, _ in cuts) / n
    hi = sum(j for _, j in cuts) / n
    assert abs(lo - 90 / 3) < 1.0 and abs(hi - 2 * 90 / 3) < 1.0
    assert min(i for i, _ in cuts) == 0 and max(j for _, j in cuts) == 90


def test_syntax_fallbacks_are_counted(tok):
    stats = FIMStats()
    cfg = FIMConfig(fim_rate=1.0, span="syntax")
    rng = random.Random(0)
    s = apply_fim("def broken(:\n  pass", tok, rng, cfg, path="a.py", stats=stats)
    assert s.span == "random (fallback: parse_error)" and unfim(s, tok) == "def broken(:\n  pass"
    apply_fim("plain words", tok, rng, cfg, path="notes.txt", stats=stats)
    apply_fim(EXAMPLE_CODE["go"], tok, rng, cfg, path="stats.go", stats=stats)
    assert stats.fallback == {"parse_error": 1, "no_language": 1}
    assert stats.syntax == 1 and stats.fallbacks == 2


def test_malformed_samples_are_refused(tok):
    sp = fim_token_ids(tok)
    ids = build_ids(tok, "psm", "a", "b", "c")
    with pytest.raises(ValueError, match="fim_middle"):
        split_fim_ids([t for t in ids if t != sp["<|fim_middle|>"]], tok)
    with pytest.raises(ValueError, match="second"):
        split_fim_ids(ids[:-1] + [sp["<|fim_suffix|>"], sp["<|endoftext|>"]], tok)
    with pytest.raises(ValueError, match="plain"):
        build_ids(tok, "plain", "a", "b", "")
    with pytest.raises(ValueError, match="fim_rate"):
        FIMConfig(fim_rate=1.5)


# ---------------------------------------------------------------------------------- repo level

paths = st.from_regex(r"[a-z]{1,3}(/[a-z]{1,3}){0,2}\.py", fullmatch=True)
repo_files = st.lists(st.tuples(paths, documents), min_size=1, max_size=5,
                      unique_by=lambda f: f[0])


def expected_repo_text(repo, files, target_path, t):
    out = f"<|repo_name|>{repo}\n"
    for p, c in files:
        out += f"<|file_sep|>{p}\n{c}\n"
    if t.mode == "plain":
        return out + f"<|file_sep|>{target_path}\n{t.prefix}<|endoftext|>"
    return out + f"<|file_sep|>{target_path}\n" + expected_text(t.mode, t.prefix, t.middle,
                                                                   t.suffix)


@SETTINGS
@given(files=repo_files, seed=st.integers(0, 2**32), budget=st.one_of(st.none(),
       st.integers(40, 400)), fim_rate=st.sampled_from([0.0, 1.0]))
def test_repo_sample_layout_budget_and_inverse(tok, files, seed, budget, fim_rate):
    cfg = FIMConfig(fim_rate=fim_rate, spm_rate=0.5)
    r = repo_fim(files, "my-repo", tok, random.Random(seed), cfg, max_tokens=budget)
    sp = fim_token_ids(tok)
    if budget is not None:
        assert len(r.input_ids) <= budget
    else:
        assert r.dropped == [] and r.truncated_chars == 0
    # every context file is either kept whole or dropped; the target is last
    nfc = {p: unicodedata.normalize("NFC", c) for p, c in files}
    assert sorted([p for p, _ in r.files] + r.dropped + [r.target_path]) == sorted(nfc)
    assert all(nfc[p] == c for p, c in r.files)
    assert [p for p, _ in r.files] == order_context_files([p for p, _ in r.files], r.target_path)
    target_kept = nfc[r.target_path][: len(nfc[r.target_path]) - r.truncated_chars]
    assert r.target.text == target_kept
    # the layout, decoded by the tokenizer
    assert decode(tok, r.input_ids) == expected_repo_text("my-repo", r.files, r.target_path,
                                                          r.target)
    # special tokens: repo name, one file_sep per file, the FIM ones (or one endoftext)
    specials = [t for t in r.input_ids if t in all_special_ids(tok)]
    n_fim = 4 if r.target.mode != "plain" else 1
    assert len(specials) == 1 + len(r.files) + 1 + n_fim
    assert specials.count(sp["<|file_sep|>"]) == len(r.files) + 1
    # the inverse
    repo, back = unfim_repo(r, tok)
    assert repo == "my-repo"
    assert back == r.files + [(r.target_path, target_kept)]


def test_repo_budget_keeps_related_files_and_truncates_the_target(tok):
    files = [
        ("pkg/core/a.py", EXAMPLE_CODE["python"]),
        ("pkg/core/b.py", "x = 1\n"),
        ("pkg/util.py", "def u():\n    return 2\n"),
        ("docs/conf.py", "project = 'p'\n" * 20),
    ]
    rng = random.Random(0)
    full = repo_fim(files, "r", tok, rng, FIMConfig(fim_rate=1.0), target=0)
    assert [p for p, _ in full.files] == ["docs/conf.py", "pkg/util.py", "pkg/core/b.py"]
    n_target = len(full.input_ids) - sum(
        1 + len(tok.encode(f"{p}\n{c}\n", add_special_tokens=False)) for p, c in full.files)
    # room for the target and the two nearest files only: the unrelated docs/conf.py goes first
    budget = len(full.input_ids) - 1
    r = repo_fim(files, "r", tok, random.Random(0), FIMConfig(fim_rate=1.0), target=0,
                 max_tokens=budget)
    assert r.dropped == ["docs/conf.py"] and r.truncated_chars == 0
    assert len(r.input_ids) <= budget
    # a budget smaller than the target alone: the target is cut at its end, big context dropped
    small = n_target // 2
    r = repo_fim(files, "r", tok, random.Random(0), FIMConfig(fim_rate=1.0), target=0,
                 max_tokens=small)
    assert r.truncated_chars > 0 and len(r.input_ids) <= small
    assert {"docs/conf.py", "pkg/util.py"} <= set(r.dropped)
    assert EXAMPLE_CODE["python"].startswith(r.target.text)
    with pytest.raises(ValueError, match="max_tokens"):
        repo_fim(files, "r", tok, random.Random(0), target=0, max_tokens=3)
    with pytest.raises(ValueError, match="newline"):
        repo_fim([("a\nb.py", "")], "r", tok, random.Random(0))


def test_render_html_escapes_and_marks_specials(tok):
    s = apply_fim("if a < b:\n    x = '<b>'\n", tok, random.Random(1), FIMConfig(fim_rate=1.0))
    h = render_html(s.input_ids, tok)
    assert "&lt;|fim_prefix|&gt;" in h and "<b>" not in h.replace("<pre", "").replace(
        "</pre>", "")
    assert h.count("background:#444444") == 4


@SETTINGS
@given(x=documents, seed=st.integers(0, 2**32), mode=st.sampled_from(["psm", "spm"]))
def test_inference_prompt_is_the_sample_cut_before_the_middle(tok, x, seed, mode):
    s = apply_fim(x, tok, random.Random(seed), FIMConfig(fim_rate=1.0,
                                                         spm_rate=float(mode == "spm")))
    prompt = fim_prompt_ids(tok, s.prefix, s.suffix, mode)
    n_mid = len(tok.encode(s.middle, add_special_tokens=False, split_special_tokens=True))
    assert s.input_ids[: len(prompt)] == prompt
    assert len(s.input_ids) == len(prompt) + n_mid + 1  # then the middle and <|endoftext|>
    ids = fim_token_ids(tok)
    if mode == "psm":
        assert prompt[-1] == ids["<|fim_middle|>"]
    else:
        assert prompt[:2] == [ids["<|fim_prefix|>"], ids["<|fim_suffix|>"]]
    assert {special_ids(tok)[t] for t in FIM_STOP_TOKENS} >= {ids["<|endoftext|>"],
                                                              ids["<|file_sep|>"]}


def test_fim_documents_streams_and_repeats_with_a_seed(tok):
    class Doc:
        def __init__(self, path, text):
            self.path, self.text = path, text

    docs = ["a = 1\n", ("x.go", EXAMPLE_CODE["go"]), Doc("y.rs", EXAMPLE_CODE["rust"])] * 10
    cfg = FIMConfig(fim_rate=0.7, span="syntax")
    stats = FIMStats()
    first = [s.input_ids for s in fim_documents(docs, tok, cfg, seed=4, stats=stats)]
    again = [s.input_ids for s in fim_documents(docs, tok, cfg, seed=4)]
    other = [s.input_ids for s in fim_documents(docs, tok, cfg, seed=5)]
    assert first == again and first != other and stats.documents == 30
    texts = [d if isinstance(d, str) else (d[1] if isinstance(d, tuple) else d.text)
             for d in docs]
    assert [unfim(ids, tok) for ids in first] == texts
    # plain strings have no path, so each of them that became FIM fell back for "no_language"
    str_fim = sum(1 for d, ids in zip(docs, first)
                  if isinstance(d, str) and split_fim_ids(ids, tok)[0] != "plain")
    assert stats.fallback == ({"no_language": str_fim} if str_fim else {})
    assert stats.syntax == stats.fim - str_fim


def test_grapheme_boundaries_keep_marks_emoji_sequences_and_crlf_whole():
    # e + combining acute, a family emoji (man ZWJ woman ZWJ girl), a flag (two regional
    # indicators), CRLF, a skin-tone modifier: each is one cut-free unit
    e_acute, flag, thumbs = "e\u0301", "\U0001F1EB\U0001F1F7", "\U0001F44D\U0001F3FD"
    family = "\U0001F468\u200D\U0001F469\u200D\U0001F467"
    units = ["a", e_acute, family, "b", flag, "\r\n", thumbs, "z"]
    text = "".join(units)
    expected = [0]
    for u in units:
        expected.append(expected[-1] + len(u))
    assert grapheme_boundaries(text) == expected
    assert grapheme_boundaries("") == [0]
    assert grapheme_boundaries("abc") == [0, 1, 2, 3]


def test_choose_span_random_and_syntax():
    text = EXAMPLE_CODE["python"]
    bounds = set(grapheme_boundaries(text))
    rng = random.Random(0)
    for _ in range(50):
        i, j, how = choose_span(text, rng, FIMConfig(span="random"))
        assert how == "random" and i <= j and {i, j} <= bounds
    cfg = FIMConfig(span="syntax")
    from qcoder_lib.syntax_spans import get_parser

    seen = set()
    for seed in range(30):
        i, j, how = choose_span(text, random.Random(seed), cfg, path="pkg/geo.py")
        # the middle is a whole node of the claimed type, checked on a fresh parse of the file
        tree = get_parser("python").parse(text.encode("utf-8"))
        b0, b1 = len(text[:i].encode("utf-8")), len(text[:j].encode("utf-8"))
        node = tree.root_node.descendant_for_byte_range(b0, b1)
        types = set()
        while node is not None and (node.start_byte, node.end_byte) == (b0, b1):
            types.add(node.type)
            node = node.parent
        assert how in types, (how, text[i:j])
        seen.add(how)
    assert len(seen) >= 4  # several node types get drawn
    # language given directly; no language, or a file that does not parse: random, with reason
    assert choose_span(text, random.Random(1), cfg, language="python")[2] != "random"
    assert choose_span(text, random.Random(1), cfg)[2] == "random (fallback: no_language)"
    i, j, how = choose_span("def f(:\n", random.Random(1), cfg, path="a.py")
    assert how == "random (fallback: parse_error)" and 0 <= i <= j <= 8


def test_fim_sample_fields_and_text(tok):
    for fim_rate, mode in ((1.0, "psm"), (0.0, "plain")):
        s = apply_fim("x = 1\ny = 2\n", tok, random.Random(2), FIMConfig(fim_rate, spm_rate=0.0))
        assert isinstance(s, FIMSample) and s.mode == mode
        assert s.text == "x = 1\ny = 2\n" == s.prefix + s.middle + s.suffix
        assert s.input_ids == build_ids(tok, mode, s.prefix, s.middle, s.suffix)
        assert s.span == ("random" if mode == "psm" else "")
    hand = FIMSample([], "psm", "a", "b", "c", "random")
    assert hand.text == "abc"


def test_repo_sample_fields(tok):
    files = [("src/a.py", "def a():\n    return 1\n"), ("src/b.py", "B = 2\n"),
             ("README.md", "# r\n")]
    r = repo_fim(files, "me/r", tok, random.Random(0), FIMConfig(fim_rate=1.0), target=0)
    assert isinstance(r, RepoSample) and isinstance(r.target, FIMSample)
    assert r.repo == "me/r" and r.target_path == "src/a.py" and r.target.text == files[0][1]
    assert r.files == [("README.md", "# r\n"), ("src/b.py", "B = 2\n")]  # nearest last
    assert r.dropped == [] and r.truncated_chars == 0
    # the target's own sample is the tail of the repo sample, after its <|file_sep|> and path
    path_ids = tok.encode("src/a.py\n", add_special_tokens=False)
    head = [fim_token_ids(tok)["<|file_sep|>"], *path_ids]
    assert r.input_ids[-len(r.target.input_ids) - len(head):] == head + r.target.input_ids


def test_defaults_are_qwen_psm_on_code_only(tok):
    """Qwen's documented recipe by default: PSM only, and FIM on code documents only."""
    cfg = FIMConfig()
    assert cfg.spm_rate == 0.0 and cfg.code_only and cfg.fim_rate == 0.5

    class Doc:
        def __init__(self, source, text):
            self.source, self.text, self.path = source, text, "f.py"

    docs = [Doc(s, f"x = {i}\nprint(x)\n") for i in range(40) for s in ("code", "docs", "math")]
    samples = list(fim_documents(docs, tok, FIMConfig(fim_rate=1.0), seed=0))
    modes = {(d.source, s.mode) for d, s in zip(docs, samples)}
    assert modes == {("code", "psm"), ("docs", "plain"), ("math", "plain")}
    everything = list(fim_documents(docs, tok, FIMConfig(fim_rate=1.0, code_only=False), seed=0))
    assert {s.mode for s in everything} == {"psm"}
    assert is_code({"group": "code"}) and is_code({"source": "synthetic"})
    assert not is_code({"group": "text", "source": "docs"})
