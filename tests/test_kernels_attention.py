"""Triton FlashAttention kernels vs the eager PyTorch reference (the model's own
``eager_attention``) and torch SDPA.

On CPU the kernels run under Triton's interpreter (set by ``qcoder_lib.kernels``) with fp32
arithmetic; shapes are small and include lengths that are not multiples of the blocks
(interpreter blocks: 32 queries x 16 keys forward/dQ, 16 x 32 for dK/dV).
Tolerances (max abs error): fp32 forward and gradients 1e-4; fp16/bf16 inputs on the
interpreter (fp32 math, output rounded once) 2 ulps of the dtype times the output scale.
On a GPU, fp16/bf16 error vs an fp32 reference must be at most 2x eager PyTorch's error in
the same dtype (``@pytest.mark.gpu``).
"""

import random

import pytest
import torch
import torch.nn.functional as F

from qcoder_lib.kernels import flash_attention
from qcoder_lib.model import eager_attention
from qcoder_lib.packed import doc_ids_from_cu_seqlens

DEV = "cuda" if torch.cuda.is_available() else "cpu"
gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (fp16/bf16 check)")
FP32_TOL = 1e-4


@pytest.fixture(autouse=True)
def _one_block_config_on_gpu(monkeypatch):
    """On a GPU, use one fixed block configuration instead of autotuning every test shape
    (minutes of compiling); `benchmarks/kernels.py --check` checks the autotuned ones."""
    monkeypatch.setenv("QCODER_TRITON_AUTOTUNE", "0")


def _qkv(B, Hq, Hkv, T, D, dtype=torch.float32, seed=0, grad=True):
    g = torch.Generator().manual_seed(seed)
    out = []
    for H in (Hq, Hkv, Hkv):
        x = torch.randn(B, H, T, D, generator=g).to(DEV, dtype)
        out.append(x.requires_grad_(grad))
    return out


def _fwd_bwd(fn, q, k, v, seed=1, **kw):
    o = fn(q, k, v, **kw)
    g = torch.randn(o.shape, generator=torch.Generator().manual_seed(seed)).to(o.device, o.dtype)
    grads = torch.autograd.grad((o * g).sum(), (q, k, v))
    return (o, *grads)


def _max_err(a, b):
    return (a.double() - b.double()).abs().max().item()


def _check_all(got, ref, tol):
    for name, a, b in zip(("o", "dq", "dk", "dv"), got, ref):
        assert a.shape == b.shape, name
        err = _max_err(a, b)
        assert err <= tol, f"{name}: max abs error {err:.3g} > {tol}"


def _random_cases(n, seed=0):
    rng = random.Random(seed)
    cases = []
    for _ in range(n):
        hkv = rng.choice([1, 2])
        cases.append((rng.choice([1, 2]), hkv * rng.choice([1, 2, 3]), hkv, rng.randint(5, 97),
                      rng.choice([16, 32, 64]), rng.choice([True, False])))
    return cases


@pytest.mark.parametrize(
    "B,Hq,Hkv,T,D,causal",
    [(1, 2, 2, 32, 16, True), (1, 4, 1, 1, 32, True), (2, 6, 2, 45, 64, True),
     (1, 2, 1, 17, 128, False)] + _random_cases(4),
)
def test_attention_fp32_forward_and_gradients_match_reference(B, Hq, Hkv, T, D, causal):
    q, k, v = _qkv(B, Hq, Hkv, T, D)
    got = _fwd_bwd(flash_attention, q, k, v, causal=causal)
    ref = _fwd_bwd(eager_attention, q, k, v, causal=causal)
    _check_all(got, ref, FP32_TOL)


@pytest.mark.parametrize("causal", [True, False])
def test_attention_matches_torch_sdpa_with_repeated_kv(causal):
    """GQA without repeating K/V equals SDPA on explicitly repeated K/V (and grads summed)."""
    B, Hq, Hkv, T, D = 2, 6, 2, 41, 32
    q, k, v = _qkv(B, Hq, Hkv, T, D, seed=3)

    def sdpa(q, k, v, causal):
        rep = Hq // Hkv
        kr, vr = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
        return F.scaled_dot_product_attention(q, kr, vr, is_causal=causal)

    got = _fwd_bwd(flash_attention, q, k, v, causal=causal)
    ref = _fwd_bwd(sdpa, q, k, v, causal=causal)
    _check_all(got, ref, FP32_TOL)


def test_document_masking_equals_separate_documents():
    """Packed documents with doc_ids give the same outputs and gradients as running each
    document on its own (the reference for packed training)."""
    B, Hq, Hkv, D = 2, 4, 2, 32
    lens = [[20, 3, 27], [1, 36, 13]]  # T = 50, boundaries inside blocks
    T = sum(lens[0])
    q, k, v = _qkv(B, Hq, Hkv, T, D, seed=4)
    doc = torch.tensor([[i for i, n in enumerate(row) for _ in range(n)] for row in lens], device=DEV)
    got = _fwd_bwd(flash_attention, q, k, v, causal=True, doc_ids=doc)
    o_sep = torch.zeros_like(got[0])
    for b, row in enumerate(lens):
        start = 0
        for n in row:
            sl = slice(start, start + n)
            o_sep[b, :, sl] = flash_attention(q[b:b + 1, :, sl], k[b:b + 1, :, sl], v[b:b + 1, :, sl])[0]
            start += n
    g = torch.randn(o_sep.shape, generator=torch.Generator().manual_seed(1)).to(DEV)
    ref = (o_sep, *torch.autograd.grad((o_sep * g).sum(), (q, k, v)))
    _check_all(got, ref, FP32_TOL)
    # and against the masked eager reference, non-causal too
    for causal in (True, False):
        _check_all(
            _fwd_bwd(flash_attention, q, k, v, causal=causal, doc_ids=doc),
            _fwd_bwd(eager_attention, q, k, v, causal=causal, doc_ids=doc),
            FP32_TOL,
        )


@pytest.mark.parametrize("causal", [True, False])
def test_document_masking_with_many_short_documents_and_unsorted_ids(causal):
    """Row 0: many short documents (the kernels skip whole blocks of other documents); row 1:
    ids that repeat non-contiguously (no skipping is valid, masking alone must be right)."""
    B, Hq, Hkv, T, D = 2, 2, 1, 71, 16
    q, k, v = _qkv(B, Hq, Hkv, T, D, seed=10)
    row0 = [i for i, n in enumerate([5, 17, 2, 33, 1, 13]) for _ in range(n)]
    row1 = [(t // 7) % 3 for t in range(T)]  # 0,0,..,1,..,2,..,0 again
    doc = torch.tensor([row0, row1], device=DEV)
    _check_all(
        _fwd_bwd(flash_attention, q, k, v, causal=causal, doc_ids=doc),
        _fwd_bwd(eager_attention, q, k, v, causal=causal, doc_ids=doc),
        FP32_TOL,
    )


def test_cu_seqlens_equals_doc_ids():
    B, T = 2, 24
    cu = torch.tensor([0, 10, 30, 48])  # second document crosses the row boundary (cut there)
    doc = doc_ids_from_cu_seqlens(cu, B, T)
    assert doc.tolist() == [[0] * 10 + [1] * 14, [1] * 6 + [2] * 18]
    q, k, v = _qkv(B, 2, 1, T, 16, seed=5, grad=False)
    a = flash_attention(q, k, v, cu_seqlens=cu.to(DEV))
    b = flash_attention(q, k, v, doc_ids=doc.to(DEV))
    assert torch.equal(a, b)


def test_non_contiguous_inputs_and_padded_head_dim():
    """(B, T, H, D) tensors transposed to (B, H, T, D) without a copy; D=48 (not a power of 2)."""
    B, T, Hq, Hkv = 1, 29, 4, 2
    for D in (32, 48):
        g = torch.Generator().manual_seed(D)
        q = torch.randn(B, T, Hq, D, generator=g).to(DEV).transpose(1, 2).requires_grad_(True)
        k = torch.randn(B, T, Hkv, D, generator=g).to(DEV).transpose(1, 2).requires_grad_(True)
        v = torch.randn(B, T, Hkv, D, generator=g).to(DEV).transpose(1, 2).requires_grad_(True)
        assert not q.is_contiguous()
        _check_all(_fwd_bwd(flash_attention, q, k, v), _fwd_bwd(eager_attention, q, k, v), FP32_TOL)


def test_backward_is_deterministic():
    q, k, v = _qkv(1, 4, 1, 37, 32, seed=6)
    a = _fwd_bwd(flash_attention, q, k, v)
    b = _fwd_bwd(flash_attention, q, k, v)
    for x, y in zip(a, b):
        assert torch.equal(x, y)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_close_to_fp32_reference(dtype):
    """fp16/bf16 tensors in and out (on the interpreter the math is fp32, so the error is the
    rounding of inputs and outputs; on GPU see the 2x-eager test below)."""
    q, k, v = _qkv(1, 4, 2, 35, 32, dtype=dtype, seed=7)
    got = _fwd_bwd(flash_attention, q, k, v)
    assert all(x.dtype == dtype for x in got)
    ref = _fwd_bwd(eager_attention, *(x.detach().float().requires_grad_(True) for x in (q, k, v)))
    eager = _fwd_bwd(eager_attention, q, k, v)
    eps = torch.finfo(dtype).eps
    for name, a, b, e in zip(("o", "dq", "dk", "dv"), got, ref, eager):
        scale = max(1.0, b.abs().max().item())
        # interpreter: fp32 math, so only input/output rounding; GPU: tensor-core math, judged
        # against eager PyTorch in the same dtype
        tol = 2 * eps * scale if DEV == "cpu" else 2 * _max_err(e, b) + eps * scale
        assert _max_err(a, b) <= tol, name


def test_empty_sequence():
    q, k, v = _qkv(1, 2, 1, 0, 16)
    o = flash_attention(q, k, v)
    assert o.shape == (1, 2, 0, 16)


def test_rejects_bad_arguments():
    q, k, v = _qkv(1, 3, 2, 8, 16, grad=False)
    with pytest.raises(ValueError, match="multiple of key/value heads"):
        flash_attention(q, k, v)
    q, k, v = _qkv(1, 2, 1, 8, 24, grad=False)
    with pytest.raises(ValueError, match="multiple of 16"):
        flash_attention(q, k, v)
    q, k, v = _qkv(1, 2, 1, 8, 16, grad=False)
    with pytest.raises(ValueError, match="doc_ids"):
        flash_attention(q, k, v, doc_ids=torch.zeros(1, 7, dtype=torch.long))


# ----------------------------------------------------------------------------- GPU only


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("causal,packed", [(True, False), (False, False), (True, True)])
@pytest.mark.parametrize("D", [64, 128])
def test_gpu_half_precision_error_at_most_twice_eager(dtype, causal, packed, D):
    B, Hq, Hkv, T = 2, 8, 2, 777
    q, k, v = _qkv(B, Hq, Hkv, T, D, dtype=dtype, seed=8)
    doc = None
    if packed:
        doc = torch.sort(torch.randint(0, 5, (B, T), generator=torch.Generator().manual_seed(0)), 1).values.to(DEV)
    kw = {"causal": causal, "doc_ids": doc}
    ref = _fwd_bwd(eager_attention, *(x.detach().float().requires_grad_(True) for x in (q, k, v)), **kw)
    got = _fwd_bwd(flash_attention, q, k, v, **kw)
    eager = _fwd_bwd(eager_attention, q, k, v, **kw)
    for name, a, e, r in zip(("o", "dq", "dk", "dv"), got, eager, ref):
        assert torch.isfinite(a).all(), name
        floor = torch.finfo(dtype).eps * 1e-2
        assert _max_err(a, r) <= 2 * _max_err(e, r) + floor, (
            f"{name}: triton err {_max_err(a, r):.3g} vs eager {_max_err(e, r):.3g}")


@pytest.mark.gpu
@gpu
def test_gpu_fp32_matches_reference_at_longer_length():
    q, k, v = _qkv(1, 8, 2, 1031, 128, seed=9)
    _check_all(_fwd_bwd(flash_attention, q, k, v), _fwd_bwd(eager_attention, q, k, v), 2e-4)


def test_attention_flops_counts_the_two_matmuls():
    """attention_flops against torch's FlopCounterMode on the eager reference (non-causal: the
    full T x T score matrix): forward = QK^T + PV; backward as FlashAttention does it = autograd's
    four matmuls (dQ, dK, dP, dV) + recomputing QK^T. Causal counts half of each."""
    from torch.utils.flop_counter import FlopCounterMode

    from qcoder_lib.kernels import attention_flops

    B, H, T, D = 2, 3, 11, 16
    q, k, v = (x.detach().cpu().requires_grad_(True) for x in _qkv(B, H, H, T, D, seed=11))
    with FlopCounterMode(display=False) as fwd_counter:
        o = eager_attention(q, k, v, causal=False)
    with FlopCounterMode(display=False) as bwd_counter:
        o.sum().backward()
    fwd = fwd_counter.get_total_flops()
    recompute = 2 * B * H * T * T * D  # one (T x D) @ (D x T) matmul per head
    total = fwd + bwd_counter.get_total_flops() + recompute
    assert attention_flops(B, H, T, D, causal=False) == fwd
    assert attention_flops(B, H, T, D, causal=False, backward=True) == total
    assert attention_flops(B, H, T, D, causal=True) == fwd / 2
    assert attention_flops(B, H, T, D, causal=True, backward=True) == total / 2
