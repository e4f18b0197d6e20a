"""Syntax-aware fill-in-the-middle spans with tree-sitter.

Qwen2.5-Coder's report parses code with tree-sitter and makes "basic logic blocks" (expression-,
statement- and function-level nodes) the middle to fill. Here the file is parsed with the
language's own grammar package (``tree_sitter_python``, ``tree_sitter_java``, ...), the named
nodes of the types listed in :data:`NODE_TYPES` become candidates, a category is drawn uniformly
among those present (``expression``, ``statement``, ``block``, ``function``) and then a node of
that category uniformly: its exact text is the middle.

When the language is unknown, the file does not parse (tree-sitter reports an error node
anywhere) or no candidate fits, :func:`syntax_span` returns ``None`` with the reason, and the
caller (:mod:`qcoder_lib.fim`) falls back to a random span and counts it.

:func:`check_middle` is the independent check: the middle alone, put into a neutral wrapper for
its category (``class _W { void _m() { ... } }`` for a Java statement), must parse without
errors and contain a node of the claimed type covering exactly the middle.
"""

from __future__ import annotations

import importlib
import random
from dataclasses import dataclass
from functools import cache

from qcoder_lib.data.sources.languages import CODE_EXTENSIONS

# Extension -> tree-sitter language, from the library's one extension table: C files (.c, .h)
# are parsed with the C++ grammar, which accepts nearly all C.
EXTENSIONS: dict[str, str] = {
    ext: "cpp" if lang == "c" else lang
    for ext, lang in CODE_EXTENSIONS.items()
    if lang in ("python", "javascript", "typescript", "java", "c", "cpp", "go", "rust")
}

# Language -> (grammar module, function returning the language pointer).
_GRAMMARS = {
    "python": ("tree_sitter_python", "language"),
    "javascript": ("tree_sitter_javascript", "language"),
    "typescript": ("tree_sitter_typescript", "language_typescript"),
    "java": ("tree_sitter_java", "language"),
    "cpp": ("tree_sitter_cpp", "language"),
    "go": ("tree_sitter_go", "language"),
    "rust": ("tree_sitter_rust", "language"),
}

_JS_TYPES = {
    "function": ["function_declaration", "method_definition", "class_declaration"],
    "block": ["statement_block", "if_statement", "for_statement", "for_in_statement",
              "while_statement", "try_statement", "switch_statement"],
    "statement": ["expression_statement", "return_statement", "lexical_declaration",
                  "variable_declaration", "throw_statement"],
    "expression": ["call_expression", "binary_expression", "member_expression",
                   "arrow_function", "object", "array", "template_string", "ternary_expression",
                   "new_expression", "subscript_expression"],
}

# Language -> category -> node types that may become the middle.
NODE_TYPES: dict[str, dict[str, list[str]]] = {
    "python": {
        "function": ["function_definition", "class_definition"],
        "block": ["if_statement", "for_statement", "while_statement", "try_statement",
                  "with_statement"],
        "statement": ["expression_statement", "return_statement", "raise_statement",
                      "import_statement", "import_from_statement", "assert_statement"],
        "expression": ["call", "binary_operator", "boolean_operator", "comparison_operator",
                       "attribute", "subscript", "list", "dictionary", "list_comprehension",
                       "conditional_expression", "lambda"],
    },
    "javascript": _JS_TYPES,
    "typescript": _JS_TYPES,
    "java": {
        "function": ["method_declaration", "constructor_declaration", "class_declaration"],
        "block": ["block", "if_statement", "for_statement", "enhanced_for_statement",
                  "while_statement", "try_statement"],
        "statement": ["expression_statement", "return_statement",
                      "local_variable_declaration", "throw_statement"],
        "expression": ["method_invocation", "binary_expression", "object_creation_expression",
                       "field_access", "array_access", "ternary_expression",
                       "lambda_expression"],
    },
    "cpp": {
        "function": ["function_definition"],
        "block": ["compound_statement", "if_statement", "for_statement",
                  "for_range_loop", "while_statement"],
        "statement": ["expression_statement", "return_statement", "declaration"],
        "expression": ["call_expression", "binary_expression", "field_expression",
                       "subscript_expression", "conditional_expression"],
    },
    "go": {
        "function": ["function_declaration", "method_declaration"],
        "block": ["block", "if_statement", "for_statement", "expression_switch_statement"],
        "statement": ["short_var_declaration", "assignment_statement", "return_statement",
                      "expression_statement"],
        "expression": ["call_expression", "binary_expression", "selector_expression",
                       "index_expression", "composite_literal"],
    },
    "rust": {
        "function": ["function_item", "impl_item", "struct_item"],
        "block": ["block", "if_expression", "match_expression", "for_expression",
                  "while_expression"],
        "statement": ["let_declaration", "expression_statement"],
        "expression": ["call_expression", "binary_expression", "field_expression",
                       "method_call_expression", "macro_invocation", "index_expression",
                       "closure_expression", "struct_expression"],
    },
}

# Language -> category -> wrappers for check_middle ("{m}" marks the middle, braces are literal);
# a claim holds if any wrapper agrees.
WRAPPERS: dict[str, dict[str, list[str]]] = {
    "python": {  # python statements are re-indented by check_middle, see there
        "function": ["{m}\n"],
        "block": ["{m}\n"],
        "statement": ["{m}\n"],
        "expression": ["_ = (\n{m}\n)\n"],
    },
    "javascript": {
        "function": ["{m}\n", "class _W {\n{m}\n}\n"],
        "block": ["function _w() {\n{m}\n}\n"],
        "statement": ["function _w() {\n{m}\n}\n"],
        "expression": ["_ = (\n{m}\n);\n"],
    },
    "java": {
        "function": ["{m}\n", "class _W {\n{m}\n}\n"],
        "block": ["class _W { void _m() {\n{m}\n} }\n"],
        "statement": ["class _W { void _m() {\n{m}\n} }\n"],
        "expression": ["class _W { void _m() { _x = (\n{m}\n); } }\n"],
    },
    "cpp": {  # "{ ;" keeps "void _w() { {...} }" from reading as a brace initialiser
        "function": ["{m}\n", "struct _W {\n{m}\n};\n"],
        "block": ["void _w() { ;\n{m}\n}\n"],
        "statement": ["void _w() { ;\n{m}\n}\n", "struct _W {\n{m}\n};\n",
                      "void _w() { if (\n{m}\n) {} }\n"],  # member / condition declarations
        "expression": ["void _w() { _x = (\n{m}\n); }\n", "void _w() { return\n{m}\n; }\n"],
    },  # (C++ reads "a < b || c > d" as a template in some contexts: two neutral ones)
    "go": {
        "function": ["package p\n{m}\n"],
        "block": ["package p\nfunc _w() {\n{m}\n}\n"],
        "statement": ["package p\nfunc _w() {\n{m}\n}\n"],
        "expression": ["package p\nfunc _w() {\n_x = ({m})\n}\n"],
    },
    "rust": {
        "function": ["{m}\n", "impl _W {\n{m}\n}\n"],
        "block": ["fn _w() {\n{m}\n}\n"],
        "statement": ["fn _w() {\n{m}\n}\n"],
        "expression": ["fn _w() { let _x = (\n{m}\n); }\n"],
    },
}
WRAPPERS["typescript"] = WRAPPERS["javascript"]

# A small, typical file per language: for docs, tests and the notebook (Java, Go and Rust code
# is not installed on this machine, so these stand in for it).
EXAMPLE_CODE: dict[str, str] = {
    "python": '''import os
from math import sqrt


class Point:
    """A point in the plane."""

    def __init__(self, x, y):
        self.x = x
        self.y = y

    def norm(self):
        return sqrt(self.x ** 2 + self.y ** 2)


def mean(values):
    if not values:
        raise ValueError("empty")
    total = 0
    for v in values:
        total += v
    return total / len(values)


def évaluer(table):  # unicode names are fine
    return {k: v * 2 for k, v in table.items() if v > 0}
''',
    "javascript": '''const fs = require("fs");

function mean(values) {
  if (values.length === 0) {
    throw new Error("empty");
  }
  let total = 0;
  for (const v of values) {
    total += v;
  }
  return total / values.length;
}

class Point {
  constructor(x, y) {
    this.x = x;
    this.y = y;
  }
  norm() {
    return Math.sqrt(this.x * this.x + this.y * this.y);
  }
}

const double = (xs) => xs.map((x) => x * 2);
module.exports = { mean, Point, double };
''',
    "typescript": '''interface Shape { area(): number; }

function mean(values: number[]): number {
  let total = 0;
  for (const v of values) {
    total += v;
  }
  return total / values.length;
}

const label = (n: number): string => `n=${n}`;
''',
    "java": '''import java.util.List;

public class Stats {
    private final List<Double> values;

    public Stats(List<Double> values) {
        this.values = values;
    }

    public double mean() {
        if (values.isEmpty()) {
            throw new IllegalArgumentException("empty");
        }
        double total = 0;
        for (double v : values) {
            total += v;
        }
        return total / values.size();
    }

    public String describe() {
        return values.size() > 3 ? "many" : "few";
    }
}
''',
    "cpp": '''#include <vector>
#include <stdexcept>

struct Point {
    double x, y;
    double norm() const { return x * x + y * y; }
};

double mean(const std::vector<double>& values) {
    if (values.empty()) {
        throw std::invalid_argument("empty");
    }
    double total = 0;
    for (double v : values) {
        total += v;
    }
    return total / values.size();
}

int main() {
    std::vector<double> v = {1.0, 2.0, 3.0};
    return mean(v) > 1.5 ? 0 : 1;
}
''',
    "go": '''package stats

import "errors"

type Point struct {
	X, Y float64
}

func (p Point) Norm() float64 {
	return p.X*p.X + p.Y*p.Y
}

func Mean(values []float64) (float64, error) {
	if len(values) == 0 {
		return 0, errors.New("empty")
	}
	total := 0.0
	for _, v := range values {
		total += v
	}
	return total / float64(len(values)), nil
}
''',
    "rust": '''use std::collections::HashMap;

struct Point {
    x: f64,
    y: f64,
}

impl Point {
    fn norm(&self) -> f64 {
        (self.x * self.x + self.y * self.y).sqrt()
    }
}

fn mean(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let total: f64 = values.iter().sum();
    Some(total / values.len() as f64)
}

fn count(words: &[&str]) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for w in words {
        *m.entry(w.to_string()).or_insert(0) += 1;
    }
    m
}
''',
}


@dataclass(frozen=True)
class SyntaxSpan:
    """A middle chosen on the syntax tree: characters ``[start, end)`` of the document."""

    start: int  # first character of the middle (a str index, never inside a character)
    end: int  # one past the last character of the middle
    node_type: str  # tree-sitter node type, e.g. "function_definition"
    category: str  # "expression", "statement", "block" or "function"
    indent: str  # whitespace between the line start and the node (used to re-check python)


def language_for_path(path: str) -> str | None:
    """The tree-sitter language for a file name by its extension, or ``None``."""
    path = path.lower()
    dot = path.rfind(".")
    return EXTENSIONS.get(path[dot:]) if dot >= 0 else None


@cache
def get_parser(language: str):
    """A cached ``tree_sitter.Parser`` for ``language`` (a key of :data:`NODE_TYPES`)."""
    import tree_sitter

    if language not in _GRAMMARS:
        raise ValueError(f"language {language!r} has no grammar here; known: {sorted(_GRAMMARS)}")
    module, fn = _GRAMMARS[language]
    lang = tree_sitter.Language(getattr(importlib.import_module(module), fn)())
    return tree_sitter.Parser(lang)


def _byte_to_char(text: str) -> dict[int, int]:
    """Map the UTF-8 byte offset of every character start (and the end) to its str index."""
    out, b = {}, 0
    for i, ch in enumerate(text):
        out[b] = i
        b += len(ch.encode("utf-8", "surrogatepass"))
    out[b] = len(text)
    return out


def candidate_nodes(text: str, language: str, min_chars: int = 2, max_chars: int | None = None):
    """Parse ``text`` and return ``(spans, reason)``: every node of a listed type whose text has
    ``min_chars..max_chars`` characters as a :class:`SyntaxSpan`, or ``([], reason)`` with reason
    ``"parse_error"`` / ``"no_candidate"``."""
    parser = get_parser(language)
    source = text.encode("utf-8", "surrogatepass")
    tree = parser.parse(source)
    if tree.root_node.has_error:
        return [], "parse_error"
    wanted = {t: cat for cat, types in NODE_TYPES[language].items() for t in types}
    b2c = _byte_to_char(text)
    spans = []
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        stack.extend(reversed(node.named_children))
        cat = wanted.get(node.type)
        if cat is None:
            continue
        start, end = b2c[node.start_byte], b2c[node.end_byte]
        n = end - start
        if n < min_chars or (max_chars is not None and n > max_chars):
            continue
        line_start = text.rfind("\n", 0, start) + 1
        indent = text[line_start:start]
        if language == "python" and cat != "expression" and indent.strip():
            continue  # a python statement after other code on its line ("if x: return y")
        spans.append(SyntaxSpan(start, end, node.type, cat, indent))
    return spans, ("ok" if spans else "no_candidate")


def syntax_span(
    text: str,
    language: str | None,
    rng: random.Random,
    min_chars: int = 2,
    max_fraction: float = 0.5,
) -> tuple[SyntaxSpan | None, str]:
    """Choose a syntax-aware middle of ``text``: a category uniformly among those present, then a
    node of it uniformly; the middle has at least ``min_chars`` characters and at most
    ``max_fraction`` of the document (at least ``min_chars``).

    Returns ``(span, "ok")`` or ``(None, reason)`` with reason ``"no_language"``,
    ``"parse_error"`` or ``"no_candidate"``.
    """
    if language is None or language not in NODE_TYPES:
        return None, "no_language"
    max_chars = max(min_chars, int(len(text) * max_fraction))
    spans, reason = candidate_nodes(text, language, min_chars, max_chars)
    if not spans:
        return None, reason
    by_cat: dict[str, list[SyntaxSpan]] = {}
    for s in spans:
        by_cat.setdefault(s.category, []).append(s)
    cat = rng.choice(sorted(by_cat))
    return rng.choice(by_cat[cat]), "ok"


def check_middle(middle: str, language: str, node_type: str, category: str, indent: str = "") -> bool:
    """True when ``middle`` alone, put in a neutral wrapper for ``category``, parses without any
    error and has a node of type ``node_type`` covering exactly the middle's characters.

    Python statements keep their indentation: the first line gets ``indent`` back and, when that
    is not empty, the block goes under ``if 1:``; later lines carry their own indentation.
    """
    parser = get_parser(language)
    for wrapper in WRAPPERS[language][category]:
        before, after = wrapper.split("{m}")
        if language == "python" and category != "expression":
            if indent.strip():
                return False  # the statement does not start its line: not a statement here
            if indent:
                before, after = "if 1:\n" + indent, "\n"
        wrapped = before + middle + after
        start = len(before)
        b_start = len(wrapped[:start].encode("utf-8", "surrogatepass"))
        b_end = b_start + len(middle.encode("utf-8", "surrogatepass"))
        tree = parser.parse(wrapped.encode("utf-8", "surrogatepass"))
        if tree.root_node.has_error:
            continue
        node = tree.root_node.descendant_for_byte_range(b_start, b_end)
        while node is not None and node.start_byte == b_start and node.end_byte == b_end:
            if node.type == node_type:
                return True
            node = node.parent
    return False
