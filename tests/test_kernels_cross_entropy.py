"""The chunked linear + cross-entropy (qcoder_lib.kernels.cross_entropy) against the plain
``F.cross_entropy(hidden @ weight.T)``: loss and gradients (hidden, weight) in fp32 within 1e-5,
for several shapes, ignored targets, both reductions and chunk sizes that do not divide the rows;
under bf16 autocast within bf16 tolerance; and the model's ``forward(targets=...)`` path against
its logits + :func:`qcoder_lib.model.next_token_loss`-style loss. Peak memory is measured in
benchmarks/train_step_gpu.py, not here."""

import pytest
import torch
import torch.nn.functional as F

from qcoder_lib.kernels.cross_entropy import (
    IGNORE_INDEX,
    LinearCrossEntropyFunction,
    default_chunk_rows,
    linear_cross_entropy,
    linear_cross_entropy_reference,
)
from qcoder_lib.packed import IGNORE_INDEX as PACKED_IGNORE


def _inputs(N, d, V, ignored=0.0, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(N, d, generator=g).to(dtype).requires_grad_(True)  # (N, d)
    w = (torch.randn(V, d, generator=g) * d**-0.5).to(dtype).requires_grad_(True)  # (V, d)
    t = torch.randint(0, V, (N,), generator=g)
    t[torch.rand(N, generator=g) < ignored] = IGNORE_INDEX
    return h, w, t


def _loss_and_grads(fn, h, w, t, **kw):
    h, w = h.detach().clone().requires_grad_(True), w.detach().clone().requires_grad_(True)
    loss = fn(h, w, t, **kw)
    gh, gw = torch.autograd.grad(loss * 1.7, (h, w))  # an upstream gradient other than 1
    return loss.detach(), gh, gw


def test_ignore_index_is_the_packed_rule():
    assert IGNORE_INDEX == PACKED_IGNORE


@pytest.mark.parametrize(
    "N, d, V, chunk, ignored, reduction",
    [
        (37, 16, 50, 8, 0.0, "mean"),  # 8 does not divide 37: a short last chunk
        (64, 32, 301, 64, 0.3, "mean"),  # one chunk, ignored targets
        (50, 24, 97, 7, 0.5, "sum"),  # sum, many short chunks
        (5, 8, 1000, 2, 0.0, "sum"),  # V much larger than N
        (33, 16, 40, 100, 0.2, "mean"),  # chunk larger than N
    ],
)
def test_fp32_loss_and_grads_match_plain_cross_entropy(N, d, V, chunk, ignored, reduction):
    h, w, t = _inputs(N, d, V, ignored)
    ref = _loss_and_grads(linear_cross_entropy_reference, h, w, t, reduction=reduction)
    ours = _loss_and_grads(linear_cross_entropy, h, w, t, reduction=reduction, chunk_rows=chunk)
    for name, a, b in zip(("loss", "grad hidden", "grad weight"), ours, ref):
        assert a.dtype == b.dtype, name
        err = (a - b).abs().max().item()
        assert err <= 1e-5 * max(1.0, b.abs().max().item()), f"{name}: max error {err:.2e}"


def test_ignored_rows_get_zero_gradient_and_all_ignored_is_nan_like_torch():
    h, w, t = _inputs(12, 8, 20)
    t[3:7] = IGNORE_INDEX
    _, gh, _ = _loss_and_grads(linear_cross_entropy, h, w, t, chunk_rows=5)
    assert gh[3:7].abs().max() == 0 and gh[:3].abs().max() > 0
    t[:] = IGNORE_INDEX
    ours = linear_cross_entropy(h, w, t, chunk_rows=5)
    ref = linear_cross_entropy_reference(h, w, t)
    assert torch.isnan(ref) and torch.isnan(ours)


def test_leading_dims_and_no_grad_path():
    h, w, t = _inputs(24, 8, 30, ignored=0.25)
    ref = linear_cross_entropy_reference(h, w, t)
    ours = linear_cross_entropy(h.view(4, 6, 8), w, t.view(4, 6), chunk_rows=5)  # (B, T, d)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)
    with torch.no_grad():  # the eval path: no Function, no gradient buffers
        torch.testing.assert_close(linear_cross_entropy(h, w, t, chunk_rows=5), ref.detach(),
                                   rtol=1e-5, atol=1e-6)


def test_only_weight_needs_grad():
    h, w, t = _inputs(20, 8, 30)
    loss = LinearCrossEntropyFunction.apply(h.detach(), w, t, IGNORE_INDEX, "sum", 6)
    (gw,) = torch.autograd.grad(loss, (w,))
    (gw_ref,) = torch.autograd.grad(linear_cross_entropy_reference(h.detach(), w, t, reduction="sum"), (w,))
    torch.testing.assert_close(gw, gw_ref, rtol=1e-5, atol=1e-6)


def test_bf16_autocast_matches_plain_path_within_bf16_tolerance():
    """Under autocast both compute bf16 logits and an fp32 softmax: the loss agrees to fp32
    rounding of the sums, gradients to bf16 rounding (bf16 eps 2^-8 = 0.4%)."""
    h, w, t = _inputs(48, 32, 200, ignored=0.1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref = _loss_and_grads(linear_cross_entropy_reference, h, w, t)
        ours = _loss_and_grads(linear_cross_entropy, h, w, t, chunk_rows=10)
    torch.testing.assert_close(ours[0], ref[0], rtol=1e-4, atol=1e-4)
    for a, b in zip(ours[1:], ref[1:]):
        assert a.dtype == b.dtype == torch.float32
        torch.testing.assert_close(a, b, rtol=2e-2, atol=4e-3 * b.abs().max().item())


def test_default_chunk_rows_and_errors():
    assert default_chunk_rows(151_936) == 384  # 256 MiB / (4 B x 151,936) = 441 -> 384
    assert default_chunk_rows(151_936) * 151_936 * 4 <= 256 * 2**20
    assert default_chunk_rows(10**9) == 64
    h, w, t = _inputs(6, 4, 9)
    with pytest.raises(ValueError, match="targets has shape"):
        linear_cross_entropy(h, w, t[:5])
    with pytest.raises(ValueError, match="weight"):
        linear_cross_entropy(h, w[:, :3], t)
    with pytest.raises(ValueError, match="reduction"):
        linear_cross_entropy(h, w, t, reduction="none")


def _tiny_model(tie: bool, seed: int = 0, backend: str = "sdpa"):
    from qcoder_lib.model import QwenConfig, QwenForCausalLM

    torch.manual_seed(seed)
    cfg = QwenConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=tie,
                     initializer_range=0.1, attn_implementation=backend)
    return QwenForCausalLM(cfg)


@pytest.mark.parametrize("tie, reduction", [(True, "mean"), (False, "sum")])
def test_model_forward_with_targets_equals_logits_then_cross_entropy(tie, reduction):
    """``model(ids, pos, targets=...)`` (chunked) vs ``F.cross_entropy(model(ids, pos))`` on packed
    rows: the same loss and the same gradient on every parameter (fp32, 1e-5)."""
    from qcoder_lib.packed import next_token_targets

    model = _tiny_model(tie)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 97, (2, 19), generator=g)
    pos = torch.tensor([list(range(7)) + list(range(12)), list(range(19))])  # two docs, one doc
    tgt = next_token_targets(ids, pos)  # (2, 19)
    ids, pos = ids[:, :-1].contiguous(), pos[:, :-1].contiguous()
    tgt = tgt.contiguous()
    assert tgt.shape == ids.shape

    logits = model(ids, pos)
    ref = F.cross_entropy(logits.flatten(0, 1).float(), tgt.flatten(), reduction=reduction)
    ref_grads = torch.autograd.grad(ref, list(model.parameters()))
    ours = model(ids, pos, targets=tgt, loss_reduction=reduction)
    assert ours.dim() == 0 and ours.dtype == torch.float32
    grads = torch.autograd.grad(ours, list(model.parameters()))
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)
    for (name, _), a, b in zip(model.named_parameters(), grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=lambda m, n=name: f"{n}: {m}")
    with pytest.raises(ValueError, match="targets has shape"):
        model(ids, pos, targets=tgt[:, :-1])


_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.gpu
@_CUDA
def test_gpu_fp32_and_bf16_autocast_match_plain_cross_entropy():
    """On CUDA at a Qwen-like vocabulary (V = 151,936, d = 896, 1,000 rows: 3 chunks of 384,
    the last short): fp32 within 1e-5 (TF32 off, as by default), bf16 autocast within bf16
    tolerance of the plain path."""
    torch.backends.cuda.matmul.allow_tf32 = False
    g = torch.Generator(device="cuda").manual_seed(0)
    h = torch.randn(1000, 896, device="cuda", generator=g)
    w = torch.randn(151_936, 896, device="cuda", generator=g) * 896**-0.5
    t = torch.randint(0, 151_936, (1000,), device="cuda", generator=g)
    t[::7] = IGNORE_INDEX
    ref = _loss_and_grads(linear_cross_entropy_reference, h, w, t)
    ours = _loss_and_grads(linear_cross_entropy, h, w, t)
    for name, a, b in zip(("loss", "grad hidden", "grad weight"), ours, ref):
        err = (a - b).abs().max().item()
        assert err <= 1e-5 * max(1.0, b.abs().max().item()), f"fp32 {name}: {err:.2e}"
    with torch.autocast("cuda", dtype=torch.bfloat16):
        ref = _loss_and_grads(linear_cross_entropy_reference, h, w, t)
        ours = _loss_and_grads(linear_cross_entropy, h, w, t)
    torch.testing.assert_close(ours[0], ref[0], rtol=1e-4, atol=1e-4)
    for a, b in zip(ours[1:], ref[1:]):
        torch.testing.assert_close(a, b, rtol=2e-2, atol=4e-3 * b.abs().max().item())


@pytest.mark.gpu
@_CUDA
@pytest.mark.parametrize("backend", ["sdpa", "triton"])
def test_gpu_model_loss_through_targets_matches_logits_path(backend):
    """On CUDA under bf16 autocast, packed rows: ``forward(targets=)`` equals logits + CE
    (loss within 1e-3 relative, parameter gradients within 5% of the largest entry)."""
    if backend == "triton":
        pytest.importorskip("triton")
    model = _tiny_model(tie=True, backend=backend).to("cuda")
    from qcoder_lib.packed import next_token_targets

    g = torch.Generator().manual_seed(2)
    ids = torch.randint(0, 97, (2, 65), generator=g)
    pos = torch.cat([torch.arange(30), torch.arange(35)]).expand(2, 65).contiguous()
    tgt = next_token_targets(ids, pos).cuda()
    ids, pos = ids[:, :-1].cuda(), pos[:, :-1].cuda()
    params = list(model.parameters())
    with torch.autocast("cuda", dtype=torch.bfloat16):
        logits = model(ids, pos)
        ref = F.cross_entropy(logits.flatten(0, 1).float(), tgt.flatten())
        ours = model(ids, pos, targets=tgt)
    ref_g = torch.autograd.grad(ref, params)
    our_g = torch.autograd.grad(ours, params)
    torch.testing.assert_close(ours, ref, rtol=1e-3, atol=1e-3)
    for a, b in zip(our_g, ref_g):
        torch.testing.assert_close(a, b, rtol=5e-2, atol=5e-2 * b.abs().max().item())


def test_backward_twice_is_refused():
    """The stored gradients are scaled in place: a second backward (retain_graph) would be
    wrong, so it raises instead."""
    h, w, t = _inputs(10, 8, 12)
    loss = linear_cross_entropy(h, w, t, chunk_rows=4)
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="backward ran twice"):
        loss.backward()
