"""RoPE kernel vs the transformers-style PyTorch reference (and transformers itself).

On CPU the kernel runs under Triton's interpreter (set by ``qcoder_lib.kernels``), which
computes in fp32; there we check fp32 (max abs error <= 1e-5) and fp16/bf16 inputs (kernel
rounds once, the reference rounds after every op: max abs error <= 2 ulps of the output scale).
On a GPU the fp16/bf16 tests also require the kernel's error vs an fp64 oracle to be no more
than 2x that of eager PyTorch in the same dtype.
"""

import pytest
import torch

from qcoder_lib.kernels import apply_rope, apply_rope_reference, rope_cos_sin

DEV = "cuda" if torch.cuda.is_available() else "cpu"
gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (bf16/fp16 check)")

FP32_TOL = 1e-5


def _inputs(B, Hq, Hkv, T, D, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, Hq, T, D, generator=g).to(DEV, dtype)
    k = torch.randn(B, Hkv, T, D, generator=g).to(DEV, dtype)
    return q, k


@pytest.mark.parametrize(
    "B,Hq,Hkv,T,D",
    [(1, 2, 2, 8, 16), (2, 4, 2, 37, 32), (1, 14, 2, 19, 64), (3, 3, 1, 5, 128)],
)
def test_rope_forward_and_backward_fp32(B, Hq, Hkv, T, D):
    q, k = _inputs(B, Hq, Hkv, T, D, torch.float32)
    cos, sin = rope_cos_sin(T, D, device=DEV)
    q.requires_grad_(True)
    k.requires_grad_(True)
    qo, ko = apply_rope(q, k, cos, sin)
    qr, kr = apply_rope_reference(q, k, cos, sin)
    assert qo.shape == q.shape and ko.shape == k.shape
    assert (qo - qr).abs().max().item() <= FP32_TOL
    assert (ko - kr).abs().max().item() <= FP32_TOL
    gq, gk = torch.randn_like(qo), torch.randn_like(ko)
    got = torch.autograd.grad((qo * gq).sum() + (ko * gk).sum(), (q, k))
    ref = torch.autograd.grad((qr * gq).sum() + (kr * gk).sum(), (q, k))
    for a, b, name in zip(got, ref, ("dq", "dk")):
        assert (a - b).abs().max().item() <= FP32_TOL, name


def test_rope_packed_position_ids_and_per_token_tables():
    """Positions restarting per document (packing) match running each document alone."""
    B, Hq, Hkv, T, D = 2, 4, 2, 23, 32
    q, k = _inputs(B, Hq, Hkv, T, D, torch.float32, seed=1)
    lens = [[9, 14], [5, 7, 11]]
    pos = torch.cat([torch.cat([torch.arange(n) for n in row]).unsqueeze(0) for row in lens]).to(DEV)
    cos, sin = rope_cos_sin(64, D, device=DEV)
    qo, ko = apply_rope(q, k, cos, sin, position_ids=pos)
    for b, row in enumerate(lens):
        start = 0
        for n in row:
            sl = slice(start, start + n)
            qd, kd = apply_rope(q[b : b + 1, :, sl], k[b : b + 1, :, sl], cos, sin)
            assert (qo[b : b + 1, :, sl] - qd).abs().max().item() <= FP32_TOL
            assert (ko[b : b + 1, :, sl] - kd).abs().max().item() <= FP32_TOL
            start += n
    # per-token (B, T, D) cos/sin, as transformers' rotary embedding hands them over
    qo2, ko2 = apply_rope(q, k, cos[pos], sin[pos])
    assert (qo2 - qo).abs().max().item() == 0 and (ko2 - ko).abs().max().item() == 0


def test_rope_matches_transformers_qwen2():
    """Our reference and kernel agree with transformers' own Qwen2 rotary code."""
    mq = pytest.importorskip("transformers.models.qwen2.modeling_qwen2")

    B, Hq, Hkv, T, D = 1, 4, 2, 11, 64
    q, k = _inputs(B, Hq, Hkv, T, D, torch.float32, seed=2)
    cos, sin = rope_cos_sin(T, D, base=1_000_000.0, device=DEV)
    pos = torch.arange(T, device=DEV).unsqueeze(0)
    q_hf, k_hf = mq.apply_rotary_pos_emb(q, k, cos[pos], sin[pos])
    qo, ko = apply_rope(q, k, cos, sin)
    assert (qo - q_hf).abs().max().item() <= FP32_TOL
    assert (ko - k_hf).abs().max().item() <= FP32_TOL


def test_rope_backward_is_rotation_by_minus_theta():
    """The gradient of a rotation is the inverse rotation: rope(-theta)(rope(theta)(x)) == x."""
    q, k = _inputs(1, 2, 1, 13, 32, torch.float32, seed=3)
    cos, sin = rope_cos_sin(13, 32, device=DEV)
    q.requires_grad_(True)
    qo, _ = apply_rope(q, k, cos, sin)
    (dq,) = torch.autograd.grad(qo, q, grad_outputs=qo.detach())
    assert (dq - q.detach()).abs().max().item() <= FP32_TOL


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_rope_half_precision_close_to_reference(dtype):
    q, k = _inputs(2, 4, 2, 21, 32, dtype, seed=4)
    cos, sin = rope_cos_sin(21, 32, device=DEV)
    qo, ko = apply_rope(q, k, cos, sin)
    assert qo.dtype == dtype and ko.dtype == dtype
    q64, k64 = apply_rope_reference(q.double(), k.double(), cos.double(), sin.double())
    eps = torch.finfo(dtype).eps
    scale = q64.abs().max().item()
    # kernel: fp32 math, one rounding -> within 1 ulp of the largest value
    assert (qo.double() - q64).abs().max().item() <= eps * scale
    assert (ko.double() - k64).abs().max().item() <= eps * scale


def test_rope_rejects_bad_shapes():
    q, k = _inputs(1, 2, 1, 8, 16, torch.float32)
    cos, sin = rope_cos_sin(4, 16, device=DEV)
    with pytest.raises(ValueError, match="rows"):
        apply_rope(q, k, cos, sin)
    cos, sin = rope_cos_sin(8, 32, device=DEV)
    with pytest.raises(ValueError, match="head_dim"):
        apply_rope(q, k, cos, sin)


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_rope_gpu_error_at_most_twice_eager(dtype):
    B, Hq, Hkv, T, D = 2, 32, 8, 1000, 128
    q, k = _inputs(B, Hq, Hkv, T, D, dtype, seed=5)
    cos, sin = rope_cos_sin(T, D, device=DEV)
    q.requires_grad_(True)
    k.requires_grad_(True)
    q64, k64 = q.detach().double().requires_grad_(True), k.detach().double().requires_grad_(True)
    qo, ko = apply_rope(q, k, cos, sin)
    qe, ke = apply_rope_reference(q, k, cos, sin)
    q6, k6 = apply_rope_reference(q64, k64, cos.double(), sin.double())
    gq, gk = torch.randn_like(q6), torch.randn_like(k6)

    def err(a, b):
        return (a.double() - b).abs().max().item()

    floor = torch.finfo(dtype).eps * 1e-3
    assert err(qo, q6) <= 2 * err(qe, q6) + floor
    assert err(ko, k6) <= 2 * err(ke, k6) + floor
    got = torch.autograd.grad((qo * gq.to(dtype)).sum() + (ko * gk.to(dtype)).sum(), (q, k))
    eag = torch.autograd.grad((qe * gq.to(dtype)).sum() + (ke * gk.to(dtype)).sum(), (q, k))
    ref = torch.autograd.grad((q6 * gq).sum() + (k6 * gk).sum(), (q64, k64))
    for a, e, r in zip(got, eag, ref):
        assert err(a, r) <= 2 * err(e, r) + floor
