"""lowprec_torch.matmul and lowprec_torch.nn.QuantLinear: products, forward values and both
gradients equal the core's (lp.fake_quantize + lp.matmul, computed independently here) bit for
bit, through a few training steps of a tiny model."""
import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

import lowprec as lp
import lowprec_torch as lt
from lowprec.recipes import Quant, Recipe, recipe

ACC = "fp32-sequential"


def u32(a):
    a = a.detach().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    return a.view(np.uint32)


@pytest.mark.parametrize("acc", ["h100-fp8", "fp32-sequential", "a100-fp16", "b200-fp8"])
def test_matmul_equals_the_core(acc):
    rng = np.random.default_rng(0)
    fa, fb = (f or "float32" for f in lp.hardware.preset(acc).input_formats)
    a = lp.round(rng.standard_normal((2, 8, 64)).astype(np.float32), fa, dtype=np.float32)
    b = lp.round(rng.standard_normal((64, 16)).astype(np.float32), fb, dtype=np.float32)
    got = lt.matmul(torch.from_numpy(a), torch.from_numpy(b), acc)
    assert np.array_equal(u32(got), u32(lp.matmul(a, b, acc)))


def test_matmul_quantized_operands_and_gradient():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((16, 64)).astype(np.float32)
    w = rng.standard_normal((64, 32)).astype(np.float32)
    qa = lt.quantize(torch.from_numpy(x), "mxfp8_e4m3")
    qb = lt.quantize(torch.from_numpy(w), "mxfp8_e4m3", axis=0)
    want = lp.matmul(lp.quantize(x, "mxfp8_e4m3"), lp.quantize(w, "mxfp8_e4m3", axis=0),
                     "b200-mxf8f6f4")
    assert np.array_equal(u32(lt.matmul(qa, qb, "b200-mxf8f6f4")), u32(want))
    a = torch.from_numpy(x).requires_grad_(True)
    b = torch.from_numpy(w).requires_grad_(True)
    g = torch.from_numpy(rng.standard_normal((16, 32)).astype(np.float32))
    (lt.matmul(a, b, ACC) * g).sum().backward()
    assert np.array_equal(u32(a.grad), u32(g @ b.detach().T))       # straight-through
    assert np.array_equal(u32(b.grad), u32(a.detach().T @ g))


def fq(v, q, axis):
    """The core's quantization of one operand as a Quant says (no RHT, deterministic):
    (values, tensor scale), a two-level format's (NVFP4's) values element x block scale
    (lp.quantize's codes decoded) with its tensor scale apart, the others lp.fake_quantize's
    with None."""
    v = np.ascontiguousarray(v, dtype=np.float32)
    if q.fmt is None:
        return v, None
    bf = lp.block_format(q.fmt) if q.is_block else None
    if bf is not None and bf.scale_rule == "nvfp4":
        bt = lp.quantize(v, bf, -1 if bf.tile else axis, q.rounding)
        e, s = bt.element_and_scale_values()
        return (e * s).astype(np.float32), np.float32(bt.tensor_scale)
    if bf is not None:
        return lp.fake_quantize(v, bf, -1 if bf.tile else axis, q.rounding), None
    return lp.round(v, q.fmt, q.rounding, dtype=np.float32), None


def mm(a, b, ta=False, tb=False):
    """lp.matmul of two fq pairs (values transposed where asked), times the tensor scales
    there are (alpha = ta x tb, each product rounded once by NumPy)."""
    (u, su), (v, sv) = a, b
    y = lp.matmul(u.T if ta else u, v.T if tb else v, ACC)
    ts = [t for t in (su, sv) if t is not None]
    alpha = None if not ts else ts[0] if len(ts) == 1 else np.float32(ts[0] * ts[1])
    return y if alpha is None else (y * alpha).astype(np.float32)


_NV = Quant("nvfp4")
_NV2 = Quant("nvfp4_2d")
NVFP4_NEAREST = Recipe((_NV, _NV2), (_NV, _NV2), (_NV, _NV), name="nvfp4-nearest")


@pytest.mark.parametrize("name", ["mxfp8", "mxfp8_ocp", "bf16", NVFP4_NEAREST])
def test_quantlinear_training_steps_forward_and_gradients_equal_the_core(name):
    """Three SGD steps: the forward product, dX and dW equal the core's, bit for bit
    (NVFP4 operands without their tensor scales, applied after the sum)."""
    rc = dataclasses.replace(recipe(name), acc=ACC)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 16))
    lt.nn.quantize_linears(model, rc)
    assert isinstance(model[0], lt.nn.QuantLinear) and isinstance(model[2], lt.nn.QuantLinear)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    rng = np.random.default_rng(2)
    for _ in range(3):
        x = rng.standard_normal((32, 64)).astype(np.float32)
        W, b = model[0].weight.detach().numpy().copy(), model[0].bias.detach().numpy().copy()
        xt = torch.from_numpy(x).requires_grad_(True)
        h = model[0](xt)
        h.retain_grad()
        y = model[2](torch.relu(h))
        loss = (y ** 2).mean()
        opt.zero_grad()
        loss.backward()
        want = mm(fq(x, rc.fwd[0], -1), fq(W, rc.fwd[1], -1), tb=True) + b
        assert np.array_equal(u32(h), u32(want))
        g = h.grad.numpy()
        dx = mm(fq(g, rc.dgrad[0], -1), fq(W, rc.dgrad[1], 0))
        dw = mm(fq(g, rc.wgrad[1], 0), fq(x, rc.wgrad[0], 0), ta=True)
        assert np.array_equal(u32(xt.grad), u32(dx))
        assert np.array_equal(u32(model[0].weight.grad), u32(dw))
        opt.step()
    assert np.isfinite(loss.item())


def test_nvfp4_recipe_trains_reproducibly():
    def run(seed):
        torch.manual_seed(0)
        m = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 16))
        lt.nn.quantize_linears(m, "nvfp4", skip=("2",), seed=seed)
        assert type(m[2]) is nn.Linear
        opt = torch.optim.Adam(m.parameters(), lr=1e-2)
        x = torch.randn(32, 64, generator=torch.Generator().manual_seed(1))
        losses = []
        for _ in range(4):
            loss = ((m(x) - 1.0) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        return losses, m[0].weight.detach().clone()

    (l1, w1), (l2, w2), (_, w3) = run(0), run(0), run(5)
    assert l1 == l2 and torch.equal(w1, w2)          # SR bits from the layer's generator
    assert not torch.equal(w1, w3)                   # another seed, other SR bits
    assert l1[-1] < l1[0]


def test_quantized_linear_errors():
    x, w = torch.ones(4, 32), torch.ones(8, 32)
    with pytest.raises(ValueError, match="generator"):
        lt.nn.quantized_linear(x, w, None, "nvfp4")
    with pytest.raises(ValueError, match="unknown recipe"):
        lt.nn.QuantLinear(32, 8, recipe="fp3")
    y = lt.nn.quantized_linear(x, w, None, Recipe((Quant("float8_e4m3fn"), Quant())))
    assert y.shape == (4, 8)
