"""Syntax-aware FIM spans: the middle is a whole node and re-parses as the type it claims."""

from __future__ import annotations

import random
import sysconfig
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qcoder_lib.syntax_spans import (
    EXAMPLE_CODE,
    NODE_TYPES,
    candidate_nodes,
    check_middle,
    language_for_path,
    syntax_span,
)

LANGS = ["python", "javascript", "typescript", "java", "cpp", "go", "rust"]
STDLIB = Path(sysconfig.get_paths()["stdlib"])


@pytest.mark.parametrize("lang", LANGS)
def test_every_candidate_of_each_language_reparses_as_claimed(lang):
    text = EXAMPLE_CODE[lang]
    spans, reason = candidate_nodes(text, lang)
    assert reason == "ok"
    cats = {s.category for s in spans}
    assert {"function", "statement", "expression"} <= cats, cats
    for s in spans:
        middle = text[s.start : s.end]
        assert s.node_type in NODE_TYPES[lang][s.category]
        assert middle == middle.strip() or s.node_type.endswith("string"), middle
        assert check_middle(middle, lang, s.node_type, s.category, s.indent), (s, middle)


def _installed_code() -> list[tuple[str, str, str]]:
    """(language, name, text) of real code installed here: stdlib Python, torch's C++ headers,
    matplotlib's JavaScript."""
    import matplotlib
    import torch

    out = []
    for name in ("textwrap.py", "json/decoder.py", "dataclasses.py", "argparse.py"):
        out.append(("python", name, (STDLIB / name).read_text(encoding="utf-8")))
    c10 = Path(torch.__file__).parent / "include" / "c10" / "util"
    for f in sorted(c10.glob("*.h"))[:80]:
        out.append(("cpp", f.name, f.read_text(encoding="utf-8", errors="replace")))
    js = Path(matplotlib.__file__).parent / "backends" / "web_backend" / "js"
    for f in sorted(js.glob("*.js")):
        out.append(("javascript", f.name, f.read_text(encoding="utf-8")))
    return out


def test_real_installed_code_every_candidate_reparses():
    n_files = n_spans = 0
    bad = []
    for lang, name, text in _installed_code():
        spans, reason = candidate_nodes(text, lang)
        n_files += reason == "ok"
        for s in spans:
            n_spans += 1
            if not check_middle(text[s.start : s.end], lang, s.node_type, s.category, s.indent):
                bad.append((name, s.node_type, text[s.start : s.end][:80]))
    assert n_files >= 20 and n_spans > 5000
    assert bad == []


@settings(max_examples=200, deadline=None)
@given(lang=st.sampled_from(LANGS), seed=st.integers(0, 2**32),
       cut=st.one_of(st.just(1.0), st.floats(0.0, 1.0)),
       unicode_name=st.text(alphabet="αβγ中文é", min_size=1, max_size=4))
def test_sampled_middles_parse_as_their_type_or_fall_back(lang, seed, cut, unicode_name):
    # the file, with a unicode comment in front (byte vs character offsets) and maybe truncated
    comment = "# " if lang == "python" else "// "
    full = f"{comment}{unicode_name}\n" + EXAMPLE_CODE[lang]
    text = full[: max(1, int(len(full) * cut))] if cut < 0.999 else full
    span, reason = syntax_span(text, lang, random.Random(seed))
    if span is None:
        assert reason in ("parse_error", "no_candidate")
        return
    middle = text[span.start : span.end]
    assert 2 <= len(middle) <= max(2, len(text) // 2)
    assert check_middle(middle, lang, span.node_type, span.category, span.indent)


def test_check_middle_rejects_wrong_claims():
    assert check_middle("x + 1", "python", "binary_operator", "expression")
    assert not check_middle("x + 1", "python", "call", "expression")
    assert not check_middle("def f(:", "python", "function_definition", "function")
    assert check_middle("return a;", "java", "return_statement", "statement")
    assert not check_middle("return a", "java", "return_statement", "statement")  # no ';'
    assert not check_middle("a.b(", "go", "call_expression", "expression")
    assert check_middle("fn f() -> i32 { 1 }", "rust", "function_item", "function")
    # a python statement that does not start its line is not offered as a statement
    assert not check_middle("return y", "python", "return_statement", "statement", "if x: ")


def test_reasons_for_no_span():
    rng = random.Random(0)
    assert syntax_span("x = 1\n", None, rng) == (None, "no_language")
    assert syntax_span("x = 1\n", "cobol", rng) == (None, "no_language")
    assert syntax_span("def f(:\n", "python", rng) == (None, "parse_error")
    assert syntax_span("x\n", "python", rng)[1] == "no_candidate"


def test_category_is_drawn_uniformly_among_those_present():
    text = EXAMPLE_CODE["java"]
    rng = random.Random(0)
    counts: dict[str, int] = {}
    for _ in range(2000):
        s, _ = syntax_span(text, "java", rng, max_fraction=1.0)
        counts[s.category] = counts.get(s.category, 0) + 1
    assert set(counts) == {"function", "block", "statement", "expression"}
    assert all(abs(c / 2000 - 0.25) < 0.05 for c in counts.values()), counts


def test_language_for_path():
    assert language_for_path("pkg/mod.py") == "python"
    assert language_for_path("SRC/Main.JAVA") == "java"
    assert language_for_path("a/b.rs") == "rust" and language_for_path("x.hpp") == "cpp"
    assert language_for_path("README") is None and language_for_path("notes.txt") is None


def test_syntax_span_offsets_are_characters_not_bytes():
    """SyntaxSpan.start/end index the str (tree-sitter reports UTF-8 bytes): with multi-byte
    characters before a node, text[start:end] is still exactly the node's text."""
    from qcoder_lib.syntax_spans import SyntaxSpan

    text = "é_ü = 1\nif é_ü:\n    print('中文', f(é_ü))\n"
    spans, reason = candidate_nodes(text, "python")
    assert reason == "ok" and all(isinstance(s, SyntaxSpan) for s in spans)
    by_text = {(text[s.start : s.end], s.node_type): s for s in spans}
    call = by_text[("f(é_ü)", "call")]
    assert (call.start, call.end) == (text.index("f(é_ü)"), text.index("f(é_ü)") + 6)
    assert call.category == "expression"
    stmt = by_text[("print('中文', f(é_ü))", "expression_statement")]
    assert stmt.indent == "    " and stmt.category == "statement"
    assert ("if é_ü:\n    print('中文', f(é_ü))", "if_statement") in by_text
    with pytest.raises(AttributeError):  # frozen: a span is a value
        call.start = 0


def test_get_parser_is_cached_and_names_unknown_languages():
    from qcoder_lib.syntax_spans import get_parser

    for lang in LANGS:
        parser = get_parser(lang)
        assert parser is get_parser(lang)  # one parser per language
        tree = parser.parse(EXAMPLE_CODE[lang].encode("utf-8"))
        assert not tree.root_node.has_error and tree.root_node.child_count > 0
    assert get_parser("python").parse(b"def f(:\n").root_node.has_error
    assert get_parser("java").parse(b"def f(x):\n    return x\n").root_node.has_error
    with pytest.raises(ValueError, match="'cobol'"):
        get_parser("cobol")
