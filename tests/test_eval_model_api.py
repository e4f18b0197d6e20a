"""The evaluation model interface: the course model and transformers behind one API, checked
against transformers' own ``generate`` one prompt at a time (batching and left padding must not
change a greedy completion), sampling with seeds, FIM prompts, stop strings."""

import pytest
import torch

from qcoder_lib.evaluation.model_api import (
    CourseModel,
    EvalModel,
    HFModel,
    ReferenceModel,
    SamplingConfig,
    load_eval_model,
    truncate_at_stop,
    vllm_available,
)
from qcoder_lib.evaluation.task import Task

PROMPTS = ["def add(a, b):\n    return", "x = 1\n", "import os\nimport sys\n\ndef main():\n"]


@pytest.fixture(scope="module")
def tok():
    from qcoder_lib.tokenizer import course_tokenizer

    return course_tokenizer("smoke")


@pytest.fixture(scope="module")
def pair(tok, tiny_qwen):
    from qcoder_lib.model.hf_interop import to_hf_model

    vocab = -(-len(tok) // 64) * 64
    model = tiny_qwen(vocab_size=vocab, max_position_embeddings=512)
    return model, to_hf_model(model).eval()


def _tasks():
    return [Task(f"t/{i}", p, "") for i, p in enumerate(PROMPTS)]


def test_greedy_matches_transformers_generate_one_by_one(tok, pair):
    model, hf = pair
    cm = CourseModel(model, tok, "course")
    sampling = SamplingConfig(max_new_tokens=12, batch_size=3)
    got = cm.complete(_tasks(), sampling)
    got_hf = HFModel(hf, tok, "hf").complete(_tasks(), sampling)
    stops = cm.stop_token_ids()
    for i, t in enumerate(_tasks()):
        ids = torch.tensor([cm.prompt_ids(t)])
        out = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=12,
                          do_sample=False, eos_token_id=stops, pad_token_id=cm.pad_id())
        new = [x for x in out[0, ids.shape[1]:].tolist()]
        new = new[: next((j for j, x in enumerate(new) if x in stops), len(new))]
        ref = tok.decode(new, skip_special_tokens=True)
        assert got[i] == [ref] and got_hf[i] == [ref], i


def test_sampling_is_seeded_and_gives_n(tok, pair):
    cm = CourseModel(pair[0], tok)
    s = SamplingConfig(max_new_tokens=8, temperature=1.0, top_p=0.95, n=3, seed=5, batch_size=4)
    a, b = cm.complete(_tasks()[:2], s), cm.complete(_tasks()[:2], s)
    assert a == b and all(len(x) == 3 for x in a)
    c = cm.complete(_tasks()[:2], SamplingConfig(**{**vars(s), "seed": 6}))
    assert c != a
    assert len(set(a[0])) > 1  # three samples, not three copies


def test_fim_prompt_ids_insert_special_tokens_by_id(tok, pair):
    from qcoder_lib.tokenizer import special_id

    cm = CourseModel(pair[0], tok)
    t = Task("f", "a = '<|endoftext|>'\n", "", suffix="return a\n")
    ids = cm.prompt_ids(t)
    pre, suf, mid, eot = (special_id(tok, x) for x in
                          ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", "<|endoftext|>"))
    assert ids[0] == pre and ids[-1] == mid and ids.count(suf) == 1 and eot not in ids
    assert cm.complete([t], SamplingConfig(max_new_tokens=4))[0][0] is not None


def test_stop_strings_cut_both_backends(tok, pair):
    model, hf = pair
    for m in (CourseModel(model, tok), HFModel(hf, tok)):
        full = m.complete(_tasks()[:1], SamplingConfig(max_new_tokens=16))[0][0]
        assert len(full) > 6, full
        stop = full[3:5]
        cut = m.complete(_tasks()[:1], SamplingConfig(max_new_tokens=16), stop=[stop])[0][0]
        assert cut == truncate_at_stop(full, [stop]) == full[: full.find(stop)]


def test_long_prompt_keeps_its_end(tok, tiny_qwen):
    vocab = -(-len(tok) // 64) * 64
    small = CourseModel(tiny_qwen(vocab_size=vocab, max_position_embeddings=64), tok)
    out = small.complete([Task("long", "x = 1\n" * 200, "")], SamplingConfig(max_new_tokens=40))
    assert isinstance(out[0][0], str)


def test_truncate_at_stop():
    assert truncate_at_stop("ab\ncd\nef", ["\ne", "\nc"]) == "ab"
    assert truncate_at_stop("abc", []) == "abc" and truncate_at_stop("abc", [""]) == "abc"


def test_folder_loading_and_dispatch(tok, pair, tmp_path):
    from qcoder_lib.model.hf_interop import to_hf

    model, hf = pair
    to_hf(model, tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    s = SamplingConfig(max_new_tokens=6)
    course = load_eval_model(tmp_path / "m", backend="course")
    trans = load_eval_model(str(tmp_path / "m"), backend="hf", name="named")
    assert isinstance(course, CourseModel) and isinstance(trans, HFModel) and trans.name == "named"
    assert course.complete(_tasks(), s) == trans.complete(_tasks(), s)
    assert isinstance(load_eval_model(model, tokenizer=tok), CourseModel)
    assert isinstance(load_eval_model(hf, tokenizer=tok), HFModel)
    ref = ReferenceModel()
    assert load_eval_model(ref) is ref
    with pytest.raises(ValueError, match="needs its tokenizer"):
        load_eval_model(model)
    with pytest.raises(ValueError, match="backend 'tpu'"):
        load_eval_model("x", backend="tpu")
    if not torch.cuda.is_available():
        assert not vllm_available()


def test_reference_model_and_base_class():
    t = [Task("a", "p", "ref\nstop here")]
    assert ReferenceModel().complete(t, stop=["\nstop"]) == [["ref"]]
    assert ReferenceModel(lambda task: ["x", "y"]).complete(t) == [["x", "y"]]
    with pytest.raises(NotImplementedError):
        EvalModel().generate_ids([[1]], SamplingConfig(), 1, (), 0)


@pytest.mark.gpu
@pytest.mark.skipif(not vllm_available(), reason="needs vLLM and a CUDA GPU")
def test_vllm_backend_matches_transformers_greedy(tok, pair, tmp_path):
    from qcoder_lib.evaluation.model_api import VLLMModel
    from qcoder_lib.model.hf_interop import to_hf

    to_hf(pair[0], tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    s = SamplingConfig(max_new_tokens=8)
    want = HFModel.from_pretrained(tmp_path / "m", device="cuda", dtype=torch.float32
                                   ).complete(_tasks(), s)
    got = VLLMModel(tmp_path / "m", dtype="float32").complete(_tasks(), s)
    assert got == want


def test_chat_completion_extracts_answers():
    from qcoder_lib.evaluation.model_api import chat_completion

    code = Task("c", "p", "", instruction="i")
    sql = Task("s", "p", "", instruction="i", chat_answer="sql")
    text = Task("m", "p", "", instruction="i", chat_answer="text")
    reply = "Here you go:\n```python\ndef f():\n    return 1\n```\nand ```python\nx\n```"
    assert chat_completion(code, reply) == "\ndef f():\n    return 1\n"
    assert chat_completion(code, "def f(): pass") == "\ndef f(): pass"
    assert chat_completion(sql, "```sql\nSELECT a FROM t;\n```") == " a FROM t;"
    assert chat_completion(sql, "```sql\nWITH x AS (SELECT 1) SELECT * FROM x\n```").startswith(
        " WITH")
    assert chat_completion(text, "It is 7.") == "It is 7."


def test_chat_replies_score_through_the_benchmarks():
    """An instruct model's whole-function reply passes HumanEval / MBPP / SQL scoring."""
    from qcoder_lib.evaluation.humaneval import humaneval_benchmark
    from qcoder_lib.evaluation.loaders import benchmark_from_records, load_records, local_sample
    from qcoder_lib.evaluation.model_api import chat_completion
    from qcoder_lib.evaluation.sql import sql_benchmark

    he = humaneval_benchmark(limit=2)
    mb = benchmark_from_records("mbpp", load_records("mbpp", local_sample("mbpp")))
    sq = sql_benchmark(limit=2)
    for bench, full in ((he, lambda t: t.prompt + t.reference), (mb, lambda t: t.reference),
                        (sq, lambda t: "SELECT" + t.reference)):
        fence = "sql" if bench is sq else "python"
        comps = [[chat_completion(t, f"Sure.\n```{fence}\n{full(t)}```\nDone.")]
                 for t in bench.tasks]
        res = bench.score(bench.tasks, comps, None)
        assert all(r.passed for r in res), (bench.name, [(r.outcome, r.detail) for r in res])
        assert all(t.instruction for t in bench.tasks)


def test_chat_mode_prompts_with_the_chat_template(tok, pair):
    from qcoder_lib.evaluation.humaneval import humaneval_benchmark
    from qcoder_lib.evaluation.infilling import infilling_benchmark
    from qcoder_lib.tokenizer import encode_chat

    cm = CourseModel(pair[0], tok, chat=True)
    t = humaneval_benchmark(limit=1).tasks[0]
    want = encode_chat(tok, [{"role": "user", "content": t.instruction}],
                       add_generation_prompt=True)
    assert cm.uses_chat(t) and cm.input_ids(t) == want
    fim = infilling_benchmark("single-line", limit=1).tasks[0]
    assert not cm.uses_chat(fim) and cm.input_ids(fim) == cm.prompt_ids(fim)  # stays FIM
    out = cm.complete([t, fim], SamplingConfig(max_new_tokens=6), stop=["\n"])
    assert out[0][0].startswith("\n") and "\n" not in out[1][0]
    assert not CourseModel(pair[0], tok).uses_chat(t)
