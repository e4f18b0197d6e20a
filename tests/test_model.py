"""qcoder_lib.model against transformers' Qwen2ForCausalLM (fp32, CPU, random weights).

Tolerance: max |logit difference| <= 1e-5 (the issue's bar); gradients within 1e-5 of the
largest gradient entry. Weights are drawn with a large std so that every block matters.
The tiny model builders are fixtures of ``tests/conftest.py``.
"""

import pytest
import torch
from transformers import Qwen2ForCausalLM

from qcoder_lib import packed
from qcoder_lib.model import (
    COURSE_PRESETS,
    QWEN25_CODER_SIZES,
    QwenConfig,
    QwenForCausalLM,
    next_token_loss,
    rope_rotate,
    rotate_half,
)
from qcoder_lib.model.hf_interop import from_hf

TOL = 1e-5

# name: (vocab, hidden, intermediate, layers, q heads, kv heads, head_dim, tied)
CONFIGS = {
    "gqa_tied": (128, 64, 96, 2, 4, 2, None, True),
    "mha_untied": (96, 48, 80, 2, 3, 3, None, False),
    "mqa_tied": (80, 64, 72, 2, 8, 1, None, True),
    "odd_sizes": (97, 40, 36, 3, 5, 5, None, False),
    "head_dim_12": (61, 30, 50, 1, 6, 2, 12, False),  # head_dim != hidden / heads
}


def config_fields(name):
    """The transformers Qwen2Config fields of one of CONFIGS."""
    vocab, d, f, layers, hq, hkv, hd, tied = CONFIGS[name]
    return {"vocab_size": vocab, "hidden_size": d, "intermediate_size": f,
            "num_hidden_layers": layers, "num_attention_heads": hq, "num_key_value_heads": hkv,
            "head_dim": hd, "tie_word_embeddings": tied}


@pytest.fixture(scope="module", params=list(CONFIGS))
def pair(request, hf_tiny_model):
    hf = hf_tiny_model(**config_fields(request.param))
    return request.param, hf, from_hf(hf, attn_implementation="eager")


@pytest.mark.parametrize("backend", ["eager", "sdpa"])
@pytest.mark.parametrize("hf_attn", ["eager", "sdpa"])
def test_logits_match_transformers(pair, backend, hf_attn):
    name, hf, ours = pair
    hf.set_attn_implementation(hf_attn)
    ours.config.attn_implementation = backend
    torch.manual_seed(1)
    V = ours.config.vocab_size
    ids = torch.randint(0, V, (3, 19))
    with torch.no_grad():
        err = (ours(ids) - hf(ids).logits).abs().max().item()
        pos = torch.arange(19).expand(3, 19) + torch.tensor([[0], [5], [2]])  # shifted rows
        err_pos = (ours(ids, pos) - hf(ids, position_ids=pos).logits).abs().max().item()
    assert err <= TOL, f"{name}: max |logit diff| {err:.2e}"
    assert err_pos <= TOL, f"{name} with position_ids: max |logit diff| {err_pos:.2e}"


def test_packed_rows_match_transformers_and_separate_documents(pair):
    """position_ids restarting inside a row start a new document: attention does not cross
    it. transformers does the same only with use_cache=False (with its default use_cache=True
    it builds a cache and skips the packed-sequence detection)."""
    name, hf, ours = pair
    torch.manual_seed(2)
    ids = torch.randint(0, ours.config.vocab_size, (2, 16))
    lengths = [[7, 9], [3, 5, 8]]
    pos = torch.stack([torch.cat([torch.arange(n) for n in row]) for row in lengths])
    with torch.no_grad():
        packed = ours(ids, pos)
        theirs = hf(ids, position_ids=pos, use_cache=False).logits
        err_hf = (packed - theirs).abs().max().item()
        err_sep = 0.0
        for b, row in enumerate(lengths):
            start = 0
            for n in row:
                alone = ours(ids[b : b + 1, start : start + n])
                err_sep = max(err_sep, (packed[b, start : start + n] - alone[0]).abs().max().item())
                start += n
    assert err_hf <= TOL, f"{name}: packed vs transformers {err_hf:.2e}"
    assert err_sep <= TOL, f"{name}: packed vs documents run alone {err_sep:.2e}"


@pytest.mark.parametrize("backend", ["eager", "sdpa"])
def test_gradients_match_transformers(pair, backend):
    name, hf, ours = pair
    ours.config.attn_implementation = backend
    hf.set_attn_implementation("eager")
    torch.manual_seed(3)
    ids = torch.randint(0, ours.config.vocab_size, (2, 13))
    for m in (ours, hf):
        m.zero_grad(set_to_none=True)
    next_token_loss(ours(ids), ids).backward()
    next_token_loss(hf(ids, use_cache=False).logits, ids).backward()
    theirs = dict(hf.named_parameters())
    for n, p in ours.named_parameters():
        g_ref = theirs[n].grad
        scale = g_ref.abs().max().item()
        err = (p.grad - g_ref).abs().max().item()
        assert err <= TOL * max(scale, 1.0), f"{name}: grad of {n} differs by {err:.2e}"


def test_rmsnorm_is_fp32_in_bf16():
    from qcoder_lib.model import RMSNorm

    norm = RMSNorm(64).to(torch.bfloat16)
    x = (torch.randn(2, 5, 64) * 30).to(torch.bfloat16)
    ref = x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + 1e-6)
    assert norm(x).dtype == torch.bfloat16
    assert (norm(x).float() - ref.to(torch.bfloat16).float()).abs().max().item() == 0.0


def test_rotate_half_is_half_split_and_rope_preserves_norm():
    x = torch.arange(8.0)
    assert rotate_half(x).tolist() == [-4, -5, -6, -7, 0, 1, 2, 3]
    q = torch.randn(1, 2, 6, 8)
    from qcoder_lib.model import RotaryEmbedding

    cos, sin = RotaryEmbedding(8, 10000.0)(torch.arange(6)[None], torch.float32)
    r = rope_rotate(q, cos, sin)
    assert torch.allclose(r.norm(dim=-1), q.norm(dim=-1), atol=1e-5)
    assert torch.equal(r[:, :, 0], q[:, :, 0])  # position 0: no rotation
    # relative: <rope(q, m), rope(k, n)> depends only on m - n
    k = torch.randn(1, 2, 6, 8)
    cos2, sin2 = RotaryEmbedding(8, 10000.0)(torch.arange(6)[None] + 11, torch.float32)
    dots = (r * rope_rotate(k, cos, sin)).sum(-1)
    dots_shifted = (rope_rotate(q, cos2, sin2) * rope_rotate(k, cos2, sin2)).sum(-1)
    assert torch.allclose(dots, dots_shifted, atol=1e-4)


def test_rope_frequencies_are_transformers_and_feed_the_kernel_tables(hf_tiny_config):
    """rope_inv_freq (the one place RoPE frequencies are computed) equals transformers' Qwen2
    inv_freq; rope_angles and the Triton tables (kernels.rope_cos_sin) are the same numbers."""
    from transformers.models.qwen2.modeling_qwen2 import Qwen2RotaryEmbedding

    from qcoder_lib.kernels import rope_cos_sin
    from qcoder_lib.model import rope_angles, rope_inv_freq

    hcfg = hf_tiny_config(hidden_size=64, num_attention_heads=4, rope_theta=1_000_000.0)
    theirs = Qwen2RotaryEmbedding(hcfg)
    ours = rope_inv_freq(16, 1_000_000.0)
    assert ours.shape == (8,) and torch.equal(ours, theirs.inv_freq)
    pos = torch.arange(9)[None]
    cos_hf, sin_hf = theirs(torch.zeros(1, 9, 64), pos)
    cos, sin = rope_angles(pos, ours)
    assert torch.equal(cos, cos_hf) and torch.equal(sin, sin_hf)
    table_cos, table_sin = rope_cos_sin(9, 16, base=1_000_000.0)
    assert torch.equal(table_cos, cos[0]) and torch.equal(table_sin, sin[0])
    with pytest.raises(ValueError, match="head_dim=7"):
        rope_inv_freq(7, 10000.0)


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="attn_implementation"):
        QwenConfig.preset("smoke", attn_implementation="flash")
    with pytest.raises(ValueError, match="num_key_value_heads"):
        QwenConfig(hidden_size=64, num_attention_heads=4, num_key_value_heads=3)
    with pytest.raises(ValueError, match="unknown preset"):
        QwenConfig.preset("1B")
    model = QwenForCausalLM(QwenConfig.preset("smoke", vocab_size=32))
    with pytest.raises(ValueError, match="position_ids"):
        model(torch.zeros(2, 5, dtype=torch.long), torch.arange(4)[None])


def test_course_presets_take_vocab_from_tokenizer():
    """A course preset's vocabulary: vocab_size as given, len(tokenizer) padded to 128, else the
    profile's course tokenizer size (course_vocab_rows) read from qcoder_lib.tokenizer."""
    from qcoder_lib import tokenizer
    from qcoder_lib.model import course_vocab_rows

    class Tok:
        def __len__(self):
            return 1000 + 22

    assert QwenConfig.preset("smoke", tokenizer=Tok()).vocab_size == 1024  # 1022 -> 8 * 128
    n = tokenizer.course_vocab_size("cpu")
    assert n <= course_vocab_rows("cpu") < n + 128 and course_vocab_rows("cpu") % 128 == 0
    assert QwenConfig.preset("cpu").vocab_size == course_vocab_rows("cpu")
    assert QwenConfig.preset("cpu", vocab_size=777).vocab_size == 777
    for name in COURSE_PRESETS:
        QwenConfig.preset(name)  # valid


@pytest.mark.parametrize("size", list(QWEN25_CODER_SIZES))
def test_param_count_matches_transformers_for_every_size(size):
    from qcoder_lib.model.hf_interop import to_hf_config

    cfg = QwenConfig.preset(size)
    with torch.device("meta"):
        ours = QwenForCausalLM(cfg)
        hf = Qwen2ForCausalLM(to_hf_config(cfg))
    assert ours.num_params() == cfg.num_params()
    assert cfg.num_params().total == hf.num_parameters()
    assert {n for n, _ in ours.named_parameters(remove_duplicate=False)} >= {
        n for n, _ in hf.named_parameters()
    }


def test_half_billion_preset_counts():
    n = QwenConfig.preset("0.5B").num_params()
    assert abs(n.total / 1e9 - 0.49) < 0.01 and abs(n.non_embedding / 1e9 - 0.36) < 0.01
    n7 = QwenConfig.preset("7B").num_params()  # model card: 7.61B total, 6.53B non-embedding
    assert abs(n7.total / 1e9 - 7.61) < 0.01 and abs(n7.non_embedding / 1e9 - 6.53) < 0.01


def test_flops_per_token_matches_a_flop_counter():
    from torch.utils.flop_counter import FlopCounterMode

    cfg = QwenConfig.preset("smoke", vocab_size=512, attn_implementation="eager")
    model = QwenForCausalLM(cfg)
    T = 32
    ids = torch.randint(0, 512, (2, T))
    with FlopCounterMode(display=False) as fc:
        logits = model(ids)
    fwd = fc.get_total_flops() / ids.numel()
    with FlopCounterMode(display=False) as fc2:
        logits.sum().backward()
    bwd = fc2.get_total_flops() / ids.numel()
    # the formula counts the full T x T attention; eager attention computes exactly that
    # (biases and norm weights are counted as matmul parameters: < 1% here)
    assert fwd == pytest.approx(cfg.flops_per_token(T, training=False), rel=0.01)
    assert fwd + bwd == pytest.approx(cfg.flops_per_token(T, training=True), rel=0.05)


def _packed_batch(vocab, B=2, lengths=(6, 10)):
    ids = torch.randint(0, vocab, (B, sum(lengths)))
    pos = torch.cat([torch.arange(n) for n in lengths]).expand(B, -1)  # two documents per row
    return ids, pos


def _count_calls(monkeypatch, module, name):
    """Wrap ``module.name`` so that its calls are counted (the real function still runs)."""
    calls = []
    real = getattr(module, name)

    def counted(*args, **kwargs):
        calls.append(name)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls


def test_triton_backend_uses_both_kernels_and_matches_eager(monkeypatch):
    """attn_implementation="triton": the fused RoPE kernel then FlashAttention in every layer
    (counted), packed documents masked from position_ids; logits and every gradient within 1e-4
    of the eager backend (fp32, Triton interpreter on CPU)."""
    kernels = pytest.importorskip("qcoder_lib.kernels")
    torch.manual_seed(4)
    cfg = QwenConfig.preset("smoke", vocab_size=64, attn_implementation="eager")
    model = QwenForCausalLM(cfg)
    ids, pos = _packed_batch(64)
    ref = model(ids, pos)
    ref_grads = torch.autograd.grad(ref.square().mean(), list(model.parameters()))
    rope_calls = _count_calls(monkeypatch, kernels, "apply_rope")
    attn_calls = _count_calls(monkeypatch, kernels, "flash_attention")
    model.config.attn_implementation = "triton"
    out = model(ids, pos)
    grads = torch.autograd.grad(out.square().mean(), list(model.parameters()))
    assert len(rope_calls) == len(attn_calls) == cfg.num_hidden_layers
    assert (out - ref).abs().max().item() <= 1e-4
    for (n, _), g, g_ref in zip(model.named_parameters(), grads, ref_grads):
        assert (g - g_ref).abs().max().item() <= 1e-4 * max(1.0, g_ref.abs().max().item()), n
    # the documents really are separated: the second one alone gives the same logits
    alone = model(ids[:, 6:])
    assert (out[:, 6:] - alone).abs().max().item() <= 1e-4


_ON_GPU = pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU")])


@pytest.mark.parametrize("device", ["cpu", _ON_GPU])
@pytest.mark.parametrize("mode", ["autocast", "pure_bf16"])
def test_triton_backend_trains_in_bf16(mode, device):
    """The triton backend under torch.autocast(bfloat16) over fp32 weights, and with bf16
    weights: forward + backward run (q/k/v dtypes reconciled at the kernel call), the loss and
    the gradients are finite, and they agree with the sdpa backend in the same mode (bf16
    tolerance: loss within 2e-2, gradients within 5% of the largest entry). On CPU the kernels
    run under Triton's interpreter."""
    pytest.importorskip("qcoder_lib.kernels")
    torch.manual_seed(5)
    cfg = QwenConfig.preset("smoke", vocab_size=64)
    model = QwenForCausalLM(cfg).to(device)
    if mode == "pure_bf16":
        model = model.to(torch.bfloat16)
    ids, pos = (t.to(device) for t in _packed_batch(64))
    results = {}
    for backend in ("sdpa", "triton"):
        model.config.attn_implementation = backend
        model.zero_grad(set_to_none=True)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=mode == "autocast"):
            logits = model(ids, pos)
            loss = next_token_loss(logits, ids)
        assert logits.dtype == torch.bfloat16, backend
        loss.backward()
        grads = [p.grad.float() for p in model.parameters()]
        assert torch.isfinite(loss) and all(torch.isfinite(g).all() for g in grads), backend
        results[backend] = (loss.item(), grads)
    (loss_s, g_s), (loss_t, g_t) = results["sdpa"], results["triton"]
    assert abs(loss_s - loss_t) <= 2e-2, (loss_s, loss_t)
    for (n, _), a, b in zip(model.named_parameters(), g_t, g_s):
        assert (a - b).abs().max().item() <= 5e-2 * max(b.abs().max().item(), 1e-3), n


def test_sdpa_forward_and_loss_compile_without_graph_breaks():
    """torch._dynamo.explain of forward + loss with the sdpa backend on packed rows: one graph,
    0 breaks (document detection needs no host sync under compile: the model then always builds
    the document mask, which for a one-document row is the causal mask), and the compiled logits
    equal the eager ones."""
    import torch._dynamo

    torch.manual_seed(6)
    model = QwenForCausalLM(QwenConfig.preset("smoke", vocab_size=64))
    ids, pos = _packed_batch(64, lengths=(5, 7))

    def step(ids, pos):
        logits = model(ids, pos)
        return logits, next_token_loss(logits, ids)

    torch._dynamo.reset()
    explanation = torch._dynamo.explain(step)(ids, pos)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1
    with torch.no_grad():
        eager_logits, _ = step(ids, pos)
        compiled_logits, _ = torch.compile(step, backend="eager", fullgraph=True)(ids, pos)
    assert (compiled_logits - eager_logits).abs().max().item() <= 1e-5
    torch._dynamo.reset()


def test_next_token_loss_matches_shifted_cross_entropy():
    torch.manual_seed(5)
    logits = torch.randn(2, 6, 11, requires_grad=True)
    labels = torch.randint(0, 11, (2, 6))
    labels[0, 3] = -100
    ref = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, 11), labels[:, 1:].reshape(-1), ignore_index=-100
    )
    assert torch.allclose(next_token_loss(logits, labels), ref, atol=1e-6)


@pytest.mark.parametrize("backend", ["eager", "sdpa"])
def test_bf16_logits_equal_transformers(backend):
    """In bf16 the casts happen where transformers does them (RMSNorm in fp32 then cast back,
    cos/sin computed in fp32 then cast), so the logits are bit-identical."""
    from qcoder_lib.model.hf_interop import to_hf_model

    torch.manual_seed(6)
    model = QwenForCausalLM(QwenConfig.preset("smoke", vocab_size=300, attn_implementation=backend))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    model = model.to(torch.bfloat16)
    hf = to_hf_model(model, attn_implementation=backend)
    ids = torch.randint(0, 300, (2, 20))
    with torch.no_grad():
        assert torch.equal(model(ids), hf(ids).logits)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_backends_agree_on_gpu(dtype):
    """On a GPU: sdpa and triton (packed rows, fwd + bwd) match eager; greedy generation runs."""
    torch.manual_seed(7)
    cfg = QwenConfig.preset("smoke", vocab_size=256, attn_implementation="eager")
    model = QwenForCausalLM(cfg).to("cuda", dtype)
    ids = torch.randint(0, 256, (2, 64), device="cuda")
    pos = torch.cat([torch.arange(40), torch.arange(24)]).to("cuda").expand(2, 64)
    ref = model(ids, pos).float()
    tol = 1e-3 if dtype == torch.float32 else 5e-2
    backends = ["sdpa"]
    try:
        import qcoder_lib.kernels.attention  # noqa: F401

        backends.append("triton")
    except ImportError:
        pass
    for backend in backends:
        model.config.attn_implementation = backend
        out = model(ids, pos).float()
        assert (out - ref).abs().max().item() <= tol * max(1.0, ref.abs().max().item()), backend
        out.square().mean().backward()
    tokens = model.generate([[1, 2, 3], [4, 5]], 5)
    assert [len(t) for t in tokens] == [5, 5]


def test_wrapped_projections_are_called_not_bypassed():
    """q/k/v run as one fused matmul only when they are plain nn.Linear; a LoRA-wrapped
    projection (peft) must still contribute: unmerged LoRA == merged weights != base."""
    peft = pytest.importorskip("peft")
    torch.manual_seed(8)
    cfg = QwenConfig.preset("smoke", vocab_size=64)
    base = QwenForCausalLM(cfg).eval()
    ids = torch.randint(0, 64, (2, 10))
    with torch.no_grad():
        ref = base(ids)
    lora_cfg = peft.LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False
    )
    lora = peft.get_peft_model(base, lora_cfg).eval()
    with torch.no_grad():
        with_lora = lora(input_ids=ids)
        merged = lora.merge_and_unload()(ids)
    assert (with_lora - ref).abs().max().item() > 1e-3
    assert (with_lora - merged).abs().max().item() <= 1e-5


# ------------------------------------------------------------------ the building blocks, one by one


def _hf_block_config(hf_tiny_config, name="gqa_tied"):
    cfg = hf_tiny_config(**config_fields(name))
    cfg._attn_implementation = "eager"
    return cfg


def test_param_count_fields_match_the_parameters_held():
    """ParamCount.total counts every distinct tensor; non_embedding leaves out embed_tokens
    (and an untied lm_head), counted here from named_parameters, not from the formula."""
    from qcoder_lib.model import ParamCount

    for tied in (True, False):
        cfg = QwenConfig.preset("smoke", vocab_size=96, tie_word_embeddings=tied)
        model = QwenForCausalLM(cfg)
        n = model.num_params()
        assert isinstance(n, ParamCount) and isinstance(cfg.num_params(), ParamCount)
        sizes = {name: p.numel() for name, p in model.named_parameters()}  # tied: counted once
        embedding = sizes["model.embed_tokens.weight"] + sizes.get("lm_head.weight", 0)
        assert n.total == sum(sizes.values()) and n.non_embedding == n.total - embedding
        assert n == (n.total, n.non_embedding)  # a tuple: (total, non_embedding)


def test_rmsnorm_function_gradients_match_numerical_and_autograd():
    """The hand-written backward of RMSNormFunction, in float64: gradcheck (finite differences)
    and equality with autograd through the plain formula (tolerance 1e-10)."""
    from qcoder_lib.model import RMSNormFunction

    torch.manual_seed(9)
    x = (3 * torch.randn(2, 3, 7, dtype=torch.float64)).requires_grad_(True)
    w = (1 + 0.3 * torch.randn(7, dtype=torch.float64)).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x, w: RMSNormFunction.apply(x, w, 1e-6), (x, w))
    dy = torch.randn(2, 3, 7, dtype=torch.float64)
    ref_out = w * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)
    out = RMSNormFunction.apply(x, w, 1e-6)
    ref = torch.autograd.grad(ref_out, (x, w), dy)
    got = torch.autograd.grad(out, (x, w), dy)
    assert (out - ref_out).abs().max().item() <= 1e-12
    for a, b in zip(got, ref):
        assert (a - b).abs().max().item() <= 1e-10
    # weight without gradient: no dweight is computed (None), dx unchanged
    out = RMSNormFunction.apply(x, w.detach(), 1e-6)
    (dx,) = torch.autograd.grad(out, (x,), dy)
    assert (dx - ref[0]).abs().max().item() <= 1e-10


@pytest.mark.parametrize("groups", [1, 3])
def test_eager_attention_matches_torch_sdpa(groups):
    """eager_attention (GQA by repeating K/V, softmax in fp32), the one PyTorch attention
    reference, against torch SDPA: plain causal (no mask), a packed-document mask given or built
    from doc_ids, not causal, and 2 new queries after 5 cached keys; fp32, 1e-6."""
    import torch.nn.functional as F

    from qcoder_lib.model import eager_attention

    torch.manual_seed(10)
    B, Hkv, T, D = 2, 2, 9, 8
    q = torch.randn(B, Hkv * groups, T, D)
    k, v = torch.randn(B, Hkv, T, D), torch.randn(B, Hkv, T, D)
    scale = D**-0.5
    gqa = groups > 1

    def check(got, **sdpa_kw):
        ref = F.scaled_dot_product_attention(q_, k_, v_, scale=scale, enable_gqa=gqa, **sdpa_kw)
        assert (got - ref).abs().max().item() <= 1e-6, sdpa_kw.keys()

    q_, k_, v_ = q, k, v
    check(eager_attention(q, k, v, None, scale), is_causal=True)
    check(eager_attention(q, k, v, causal=False), is_causal=False)  # default scale D ** -0.5
    doc = torch.tensor([[0] * 4 + [1] * 5, [0] * 2 + [1] * 7])
    mask = packed.attention_mask(T, T, doc_ids=doc)  # (B, 1, T, T)
    check(eager_attention(q, k, v, mask, scale), attn_mask=mask)
    check(eager_attention(q, k, v, doc_ids=doc), attn_mask=mask)
    check(eager_attention(q, k, v, doc_ids=doc, causal=False),
          attn_mask=packed.attention_mask(T, T, doc_ids=doc, causal=False))
    q_, k_, v_ = q[:, :, -2:], k[:, :, :7], v[:, :, :7]  # decoding: 2 queries at the end of 7 keys
    got = eager_attention(q_, k_, v_, None, scale)  # None: causal, aligned at the end
    check(got, attn_mask=packed.attention_mask(2, 7))
    with pytest.raises(ValueError, match="multiple of key/value heads"):
        eager_attention(q[:, :1], k, v)  # 1 query head, 2 K/V heads


def test_swiglu_matches_transformers_qwen2_mlp(hf_tiny_config, randomise):
    from transformers.models.qwen2.modeling_qwen2 import Qwen2MLP

    from qcoder_lib.model import SwiGLU

    hcfg = _hf_block_config(hf_tiny_config)
    theirs = randomise(Qwen2MLP(hcfg), 11)
    ours = SwiGLU(hcfg.hidden_size, hcfg.intermediate_size)
    ours.load_state_dict(theirs.state_dict())  # strict: same names and shapes
    x = torch.randn(2, 5, hcfg.hidden_size)
    with torch.no_grad():
        assert (ours(x) - theirs(x)).abs().max().item() <= TOL


def _hf_rope_and_mask(hcfg, B, T):
    """transformers' cos/sin and its additive causal mask (its eager attention needs one)."""
    from transformers.models.qwen2.modeling_qwen2 import Qwen2RotaryEmbedding

    x = torch.zeros(B, T, hcfg.hidden_size)
    pos = torch.arange(T).expand(B, T)
    cos, sin = Qwen2RotaryEmbedding(hcfg)(x, pos)
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    additive = torch.zeros(T, T).masked_fill(~causal, torch.finfo(torch.float32).min)
    return (cos, sin), additive.expand(B, 1, T, T), pos


@pytest.mark.parametrize("name", ["gqa_tied", "head_dim_12"])
def test_attention_matches_transformers_qwen2_attention(name, hf_tiny_config, randomise):
    """Attention (fused QKV projection, RoPE, GQA) against Qwen2Attention with the same
    weights, on each backend of ours; max |diff| <= 1e-5, gradients w.r.t. the input too."""
    from transformers.models.qwen2.modeling_qwen2 import Qwen2Attention

    from qcoder_lib.model import Attention, RotaryEmbedding
    from qcoder_lib.model.hf_interop import from_hf_config

    hcfg = _hf_block_config(hf_tiny_config, name)
    theirs = randomise(Qwen2Attention(hcfg, layer_idx=0), 12)
    cfg = from_hf_config(hcfg, attn_implementation="eager")
    ours = Attention(cfg, layer_idx=0)
    ours.load_state_dict(theirs.state_dict())
    B, T = 2, 7
    (hcos, hsin), hmask, pos = _hf_rope_and_mask(hcfg, B, T)
    x = torch.randn(B, T, hcfg.hidden_size, requires_grad=True)
    ref = theirs(x, (hcos, hsin), hmask)[0]
    (g_ref,) = torch.autograd.grad(ref.square().sum(), x)
    cos, sin = RotaryEmbedding(cfg.head_dim, cfg.rope_theta)(pos, x.dtype)
    for backend in ("eager", "sdpa"):
        ours.cfg = cfg.with_(attn_implementation=backend)
        out = ours(x, cos, sin)
        (g,) = torch.autograd.grad(out.square().sum(), x)
        assert (out - ref).abs().max().item() <= TOL, backend
        assert (g - g_ref).abs().max().item() <= TOL * max(1.0, g_ref.abs().max().item()), backend


def test_decoder_layer_matches_transformers_qwen2_decoder_layer(hf_tiny_config, randomise):
    from transformers.models.qwen2.modeling_qwen2 import Qwen2DecoderLayer

    from qcoder_lib.model import DecoderLayer, RotaryEmbedding
    from qcoder_lib.model.hf_interop import from_hf_config

    hcfg = _hf_block_config(hf_tiny_config, "mqa_tied")
    theirs = randomise(Qwen2DecoderLayer(hcfg, layer_idx=0), 13)
    cfg = from_hf_config(hcfg, attn_implementation="eager")
    ours = DecoderLayer(cfg, layer_idx=0)
    ours.load_state_dict(theirs.state_dict())
    B, T = 2, 6
    (hcos, hsin), hmask, pos = _hf_rope_and_mask(hcfg, B, T)
    x = torch.randn(B, T, hcfg.hidden_size)
    cos, sin = RotaryEmbedding(cfg.head_dim, cfg.rope_theta)(pos, x.dtype)
    with torch.no_grad():
        ref = theirs(x, attention_mask=hmask, position_embeddings=(hcos, hsin))
        err = (ours(x, cos, sin) - ref).abs().max().item()
    assert err <= TOL, f"block: max |diff| {err:.2e}"


def test_qwen_body_is_transformers_qwen2_model(hf_tiny_config, randomise):
    """QwenBody holds exactly Qwen2Model's tensors (names and shapes: a strict state-dict load
    works) and, run block by block, gives its last hidden state."""
    from transformers.models.qwen2.modeling_qwen2 import Qwen2Model

    from qcoder_lib.model import QwenBody
    from qcoder_lib.model.hf_interop import from_hf_config

    hcfg = _hf_block_config(hf_tiny_config, "odd_sizes")
    theirs = randomise(Qwen2Model(hcfg), 14).eval()
    cfg = from_hf_config(hcfg, attn_implementation="sdpa")
    body = QwenBody(cfg)
    body.load_state_dict(theirs.state_dict())  # strict
    ids = torch.randint(0, cfg.vocab_size, (2, 8))
    with torch.no_grad():
        x = body.embed_tokens(ids)
        cos, sin = body.rotary_emb(torch.arange(8)[None], x.dtype)
        for layer in body.layers:
            x = layer(x, cos, sin)
        ours = body.norm(x)
        ref = theirs(ids, use_cache=False).last_hidden_state
    assert (ours - ref).abs().max().item() <= TOL
