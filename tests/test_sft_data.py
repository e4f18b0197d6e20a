"""qcoder_lib.sft instruction data: snippets, teachers, checks, scorers, the pipeline, FIM mix."""

import json
import random
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from qcoder_lib.data import NGramIndex
from qcoder_lib.data.decontam import EvalItem
from qcoder_lib.sft.checks import code_blocks, execution_check, parses, response_code, static_check
from qcoder_lib.sft.fim_instructions import HOLE, fim_instruction, fim_instructions, mix_fim
from qcoder_lib.sft.instructions import (
    PipelineConfig,
    PipelineReport,
    StageCount,
    build_instructions,
)
from qcoder_lib.sft.samples import CodeSnippet, InstructionPair, fenced
from qcoder_lib.sft.scorer import HeuristicScorer, LLMJudgeScorer, Scorer
from qcoder_lib.sft.snippets import (
    Function,
    functions,
    seed_snippets,
    split_signature,
    stdlib_snippets,
)
from qcoder_lib.sft.teacher import CodeDerivedTeacher, HFTeacher, OpenAITeacher, Teacher

LANGS = ("python", "javascript", "java", "cpp", "go", "rust")


@pytest.fixture(scope="module")
def seeds():
    return seed_snippets()


def test_seed_snippets_cover_six_languages_and_functions_split(seeds):
    assert {s.language for s in seeds} == set(LANGS)
    for s in seeds:
        fns = functions(s.code, s.language)
        if "parse error" in s.note or "missing" in s.note:
            assert fns == [], s.source  # a file that does not parse yields no function
            continue
        assert len(fns) == 1 and isinstance(fns[0], Function) and fns[0].doc, s.source
        head, body = split_signature(fns[0].text, s.language)
        assert head + body == fns[0].text
        assert fns[0].name in head and fns[0].doc.split()[0] in fns[0].text
        assert len(fns[0].bare) < len(fns[0].text)  # the documentation was cut out
    with pytest.raises(ValueError, match="no rust function"):
        split_signature("let x = 1;", "rust")


def test_stdlib_snippets_are_documented_python_functions():
    got = list(stdlib_snippets(3))
    assert len(got) == 3
    for s in got:
        assert s.source.startswith("stdlib:") and parses(s.code, "python")
        assert functions(s.code, "python")[0].doc


def test_code_derived_teacher_makes_each_kind(seeds):
    py = next(s for s in seeds if s.language == "python" and s.tests)
    kinds = {p.kind: p for p in CodeDerivedTeacher().pairs(py)}
    assert set(kinds) == {"implement", "tests_to_code", "explain"}
    fn = functions(py.code, "python")[0]
    assert response_code(kinds["implement"]).strip() == fn.text.strip()
    assert py.tests.strip() in kinds["tests_to_code"].instruction
    assert fn.doc in kinds["explain"].response and fn.doc not in kinds["explain"].instruction
    rust = next(s for s in seeds if s.language == "rust" and not s.note)
    imp = next(p for p in CodeDerivedTeacher().pairs(rust) if p.kind == "implement")
    assert static_check(imp) is None  # the shown signature with its empty body parses
    msgs = imp.messages("sys")
    assert [m["role"] for m in msgs] == ["system", "user", "assistant"]


def test_static_check_drops_parse_errors(seeds):
    broken = [s for s in seeds if "parse error" in s.note]
    assert {s.language for s in broken} == {"javascript", "rust"}
    for s in broken:
        pairs = CodeDerivedTeacher().pairs(s)
        assert pairs and all(static_check(p) == "parse_error" for p in pairs)
    good = InstructionPair("Write it.", fenced("fn f() -> i32 { 1 }", "rust"), "rust",
                           "implement", "t")
    bad = InstructionPair("Write it.", fenced("fn f( -> i32 { 1 }", "rust"), "rust",
                          "implement", "t")
    assert static_check(good) is None and static_check(bad) == "parse_error"
    prose = InstructionPair("Write it.", "no code here", "rust", "implement", "t")
    assert static_check(prose) == "no_code"
    assert code_blocks("a\n```py\nx = 1\n```\nb") == [("py", "x = 1\n")]


def test_execution_check_runs_tests_in_the_sandbox():
    ok = InstructionPair("i", fenced("def f(x):\n    return x + 1", "python"), "python",
                         "implement", "t", tests="assert f(1) == 2\n")
    wrong = InstructionPair("i", fenced("def f(x):\n    return x", "python"), "python",
                            "implement", "t", tests="assert f(1) == 2\n")
    untested = InstructionPair("i", fenced("raise SystemExit(3)", "python"), "python",
                               "implement", "t")
    assert execution_check([ok, wrong, untested], timeout_s=20) == [None, "tests_failed", None]
    assert wrong.meta["sandbox"].startswith("failed")


class ScriptedTeacher(Teacher):
    """A teacher whose chat() replies from a list (a real Teacher subclass, no model)."""

    def __init__(self, replies):
        self.replies, self.seen = list(replies), []

    def chat(self, messages):
        self.seen.append(messages)
        return self.replies.pop(0)


def test_scorers():
    good = InstructionPair("Write a Python function `double` that doubles x.",
                           fenced("def double(x):\n    return 2 * x", "python"), "python",
                           "implement", "t")
    checks = HeuristicScorer().checks(good)
    assert all(checks.values()) and HeuristicScorer().score(good) == 1.0
    wrong_name = InstructionPair(good.instruction, fenced("def triple(x):\n    return 3 * x",
                                                          "python"), "python", "implement", "t")
    assert HeuristicScorer().checks(wrong_name)["names_match"] is False
    assert HeuristicScorer().score(wrong_name) == pytest.approx(0.8)
    assert HeuristicScorer().score(InstructionPair("hi", "", "python", "explain", "t")) <= 0.4
    judge = LLMJudgeScorer(ScriptedTeacher(["Score: 7", "I cannot rate this"]))
    assert isinstance(judge, Scorer) and isinstance(HeuristicScorer(), Scorer)
    with pytest.raises(NotImplementedError):
        Scorer().score(good)
    assert judge.score(good) == pytest.approx(0.7) and judge.score(good) == 0.0
    assert "double" in judge.teacher.seen[0][0]["content"]


def test_llm_teacher_protocol_two_calls(seeds):
    t = ScriptedTeacher(["Write a gcd function.", "```python\ndef gcd(a, b): ...\n```"])
    (pair,) = t.pairs(seeds[2])
    assert pair.kind == "teacher" and pair.instruction == "Write a gcd function."
    assert seeds[2].code.strip() in t.seen[0][0]["content"]
    assert t.seen[1] == [{"role": "user", "content": "Write a gcd function."}]


def test_openai_teacher_talks_to_a_compatible_server():
    got = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            got["path"] = self.path
            got["auth"] = self.headers.get("Authorization")
            got["body"] = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            reply = json.dumps({"choices": [{"message": {"role": "assistant",
                                                         "content": "pong"}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *a):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.handle_request, daemon=True).start()
    try:
        t = OpenAITeacher(f"http://127.0.0.1:{server.server_port}/v1", "m", api_key="k")
        assert t.chat([{"role": "user", "content": "ping"}]) == "pong"
    finally:
        server.server_close()
    assert got["path"] == "/v1/chat/completions" and got["auth"] == "Bearer k"
    assert got["body"]["model"] == "m" and got["body"]["messages"][0]["content"] == "ping"
    with pytest.raises(RuntimeError, match="127.0.0.1:9/v1/chat/completions"):
        OpenAITeacher("http://127.0.0.1:9/v1", "m", timeout_s=2).chat([])


def test_hf_teacher_generates_with_the_chat_template(hf_tiny_model):
    from qcoder_lib.tokenizer import course_tokenizer, special_id

    tok = course_tokenizer("smoke")
    model = hf_tiny_model(vocab_size=len(tok))
    model.generation_config.eos_token_id = special_id(tok, "<|im_end|>")
    t = HFTeacher(model=model, tokenizer=tok, max_new_tokens=5)
    out = t.chat([{"role": "user", "content": "hello"}])
    assert isinstance(out, str) and "<|im_start|>" not in out
    with pytest.raises(ValueError, match="name_or_path"):
        HFTeacher()


def test_pipeline_counts_and_drops_each_planted_case(seeds):
    pairs, report = build_instructions(seeds, config=PipelineConfig(timeout_s=20))
    assert isinstance(report, PipelineReport)
    assert all(isinstance(s, StageCount) for s in report.stages)
    rows = {r.stage: r for r in report.stages}
    assert list(rows) == ["synthesis", "static", "execution", "score", "dedup", "decontam"]
    for a, b in zip(report.stages, report.stages[1:]):
        assert b.seen == a.kept and a.seen - a.kept == sum(a.dropped.values()) or \
            a.stage == "synthesis"
    assert rows["static"].dropped == {"parse_error": 2}
    assert report.examples["execution/tests_failed"].startswith("sft_seed_code.jsonl:5")
    assert report.examples["dedup/duplicate"].startswith("sft_seed_code.jsonl:7")
    assert rows["decontam"].dropped == {"overlaps CourseEval/0": 2}
    assert len(pairs) == rows["decontam"].kept and report.rows()[0]["stage"] == "synthesis"
    assert {p.language for p in pairs} == set(LANGS)


def test_decontamination_is_the_data_stage_hook():
    text = "def frobnicate the widgets until every widget is shiny and bright again now"
    s = CodeSnippet("python", f'def f():\n    """{text}"""\n    return 1\n', "x")
    cfg = PipelineConfig(run_tests=False, min_score=0.0)
    index = NGramIndex([EvalItem("bench", "B/1", text)])
    kept, rep = build_instructions([s], config=cfg, index=index)
    assert kept == [] and rep.stages[-1].dropped == {"overlaps B/1": 2}
    kept, _ = build_instructions([s], config=cfg, index=NGramIndex([]))
    assert len(kept) == 2


def test_fim_instructions_and_mixed_tuning(seeds):
    pair, why = fim_instruction(seeds[0], random.Random(0))
    assert why == "ok" and pair.kind == "fim" and HOLE in pair.instruction
    doc, mid = pair.meta["document"], pair.meta["middle"]
    shown = code_blocks(pair.instruction)[0][1]
    assert shown.replace(HOLE, mid).strip() == doc.strip() and response_code(pair) == mid + "\n"
    assert static_check(pair) is None
    fims, counts = fim_instructions(seeds)
    assert counts["parse_error"] == 2 and counts["ok"] == len(fims)
    base = [InstructionPair(str(i), "r", "python", "explain", "t") for i in range(30)]
    mixed = mix_fim(base, fims, 0.1)
    share = sum(p.kind == "fim" for p in mixed) / len(mixed)
    assert len(mixed) == 33 and share == pytest.approx(0.1, abs=0.01)
    with pytest.raises(ValueError, match="share"):
        mix_fim(base, fims, 1.0)
