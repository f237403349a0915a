"""Scaled dot-product attention against PyTorch (float64): outputs and gradients, masks, causal, scale."""

from __future__ import annotations

import numpy as np
import pytest

import graphdl as gd

torch = pytest.importorskip("torch")

N, H, L, S, E, EV = 2, 3, 5, 7, 4, 6


def _cases(rng: np.random.Generator) -> list[tuple[str, dict, tuple[int, int]]]:
    return [("plain", {}, (L, S)), ("causal", {"is_causal": True}, (L, L)),
            ("bool-mask", {"attn_mask": rng.random((L, S)) > 0.3}, (L, S)),
            ("float-mask", {"attn_mask": rng.standard_normal((N, 1, L, S))}, (L, S)),
            ("scale", {"scale": 0.7}, (L, S)), ("dropout-inference", {"dropout_p": 0.2}, (L, S))]


@pytest.mark.parametrize("case", range(6))
def test_attention_matches_pytorch(case: int) -> None:
    rng = np.random.default_rng(case)
    name, kw, (lq, sk) = _cases(rng)[case]
    qa, ka = rng.standard_normal((N, H, lq, E)), rng.standard_normal((N, H, sk, E))
    va = rng.standard_normal((N, H, sk, EV))
    with gd.Graph("a", dtype="float64"):
        q, k, v = (gd.placeholder(n, (None, *a.shape[1:])) for n, a in (("q", qa), ("k", ka), ("v", va)))
        o = gd.ops.scaled_dot_product_attention(q, k, v, **kw)
        w = rng.standard_normal((H, lq, EV))
        grads = gd.grad(gd.ops.sum(o * gd.constant(w)), [q, k, v])
    got = gd.compile([o, *grads]).run({"q": qa, "k": ka, "v": va})
    tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in (qa, ka, va))
    tkw = {k_: torch.tensor(v_) if k_ == "attn_mask" else v_ for k_, v_ in kw.items() if k_ != "dropout_p"}
    ref = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, **tkw)
    (ref * torch.tensor(w)).sum().backward()
    for g, t, what in zip(got, (ref, tq.grad, tk.grad, tv.grad), ("out", "dq", "dk", "dv")):
        np.testing.assert_allclose(g, t.detach().numpy(), rtol=1e-10, atol=1e-12, err_msg=f"{name}: {what}")


def test_fused_kernel_keeps_no_scores_between_passes() -> None:
    with gd.Graph("a") as g:
        q = gd.placeholder("q", (None, 64, 16))
        o = gd.ops.scaled_dot_product_attention(q, q, q, is_causal=True)
        loss = gd.ops.mean(o * o)
        grads = gd.grad(loss, [q])
    ex = gd.compile([loss, *grads])
    ops = [n.op for n in ex.ir.nodes]
    assert ops.count("attention") == 1 and ops.count("attention_grad") == 1 and "softmax" not in ops
    # no value of size L x S = 64 x 64 per sample lives in the plan: only (N, 64, 16) and (N, 64)
    plan_shapes = [n.shape for n in ex.ir.nodes] + [s for n in ex.ir.nodes for s, _ in n.extra]
    assert not any(len(s) >= 2 and s[-2:] == (64, 64) for s in plan_shapes)
    del g


def test_attention_errors_name_the_problem() -> None:
    with gd.Graph("a"):
        q = gd.placeholder("q", (None, 5, 4))
        k = gd.placeholder("k", (None, 6, 3))
        with pytest.raises(gd.ShapeError, match="queries have 4 features but keys 3"):
            gd.ops.scaled_dot_product_attention(q, k, k)
        with pytest.raises(gd.GraphError, match="not both"):
            gd.ops.scaled_dot_product_attention(q, q, q, attn_mask=np.ones((5, 5), bool), is_causal=True)
