"""``compile_kernels``: every Triton kernel built for a real GPU target without one (proves the
kernels compile outside the interpreter)."""
from __future__ import annotations

import os

import triton

import lowprec as lp
from lowprec import blocks as _B

from .blocks import ROWS, _block_constants, _block_kernel
from .cast import BLOCK, _round_kernel
from .matmul import _group_kernel, _matmul_kernel, group_constants, kernel_constants
from .step import kernel_params

__all__ = ["compile_kernels"]


def _ptx(compiled):
    """The PTX size, after checking that no instruction flushes subnormals (``.ftz``): the
    float32 products and quotients of the NVFP4 and rceil rules must be IEEE."""
    ptx = compiled.asm["ptx"]
    if ".ftz" in ptx:
        raise RuntimeError("a kernel compiled to a flush-to-zero instruction")
    return len(ptx)


def compile_kernels(arch=90, fmts=("float8_e4m3fn", "float4_e2m1fn"),
                    block_formats=("mxfp8_e4m3", "mxfp4", "mxfp8_e4m3_rceil", "nvfp4"),
                    matmul_models=("h100-fp8", "b200-fp8")):
    """Compile every kernel for ``GPUTarget("cuda", arch, 32)`` (no GPU needed) for the given
    element and block formats (nearest-even and stochastic) and accumulator models (names,
    or ``lp.Accumulator`` such as ``lp.exact_per_block(...)``); returns {name: PTX size}. Run with
    ``TRITON_INTERPRET`` unset: code that only the interpreter accepts fails here."""
    from triton.backends.compiler import GPUTarget  # noqa: PLC0415
    from triton.compiler import ASTSource  # noqa: PLC0415
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        raise RuntimeError("compile_kernels needs TRITON_INTERPRET unset (the kernels are "
                           "interpreted functions now)")
    target = GPUTarget("cuda", arch, 32)
    out = {}
    for fmt in fmts:
        for mode, r, seeded in (("nearest_even", 0, False), ("stochastic", 32, False),
                                ("stochastic seed", 32, True)):
            P = kernel_params(lp.plan(fmt, mode.split()[0], "saturate"))
            sig = {"x_ptr": "*i32", "r_ptr": "*i32", "code_ptr": "*i32", "val_ptr": "*i32",
                   "n": "i32", "seed_lo": "i64", "seed_hi": "i64",
                   **{c: "constexpr" for c in ("P", "HAS_R", "SEEDED", "BLOCK")}}
            src = ASTSource(_round_kernel, sig, dict(P=P, HAS_R=r > 0 and not seeded,
                                                     SEEDED=seeded, BLOCK=BLOCK))
            out[f"round {fmt} {mode}"] = _ptx(triton.compile(src, target=target))
    for name in block_formats:
        bf = _B.block_format(name)
        for mode, r in (("nearest_even", 0), ("stochastic", 32)):
            P = kernel_params(lp.plan(bf.elem, mode, "saturate"))
            Ps = kernel_params(lp.plan(bf.scale_fmt, "nearest_even", "saturate")) if (
                bf.scale_rule == "nvfp4") else P
            sig = {"x_ptr": "*i32", "r_ptr": "*i32", "ts_ptr": "*fp32", "code_ptr": "*i32",
                   "scode_ptr": "*i32", "val_ptr": "*i32", "nblocks": "i32",
                   **{c: "constexpr" for c in ("P", "Ps", "S", "HAS_R", "ROWS", "K", "KP")}}
            src = ASTSource(_block_kernel, sig, dict(
                P=P, Ps=Ps, S=_block_constants(bf), HAS_R=r > 0, ROWS=ROWS, K=bf.k,
                KP=triton.next_power_of_2(bf.k)))
            out[f"block {name} {mode}"] = _ptx(triton.compile(src, target=target))
    for acc in (lp.hardware.resolve(p) for p in matmul_models):
        if acc.block_scales == "group":            # NVFP4 operands: E2M1 x E2M1, UE4M3 scales
            bf = lp.block_format("nvfp4")
            q = 2 * (bf.elem.emin - bf.elem.man_bits)
            sig = {"m_ptr": "*i64", "sig_ptr": "*i64", "label_ptr": "*i32", "bad_ptr": "*i32",
                   "c_ptr": "*i32", "out_ptr": "*i32", "err_ptr": "*i32", "R": "i32",
                   "G": "i32"}
            consts = group_constants(acc, 2 * bf.scale_fmt.man_bits - q)
            sig.update({c: "constexpr" for c in consts})
            out[f"group {acc}"] = _ptx(triton.compile(ASTSource(_group_kernel, sig, consts),
                                                      target=target))
            continue
        fa, fb = acc.input_formats
        sig = {"sa_ptr": "*i64", "ea_ptr": "*i32", "fa_ptr": "*i32", "sb_ptr": "*i64",
               "eb_ptr": "*i32", "fb_ptr": "*i32", "c_ptr": "*i32", "out_ptr": "*i32",
               "err_ptr": "*i32", "M": "i32", "N": "i32", "K": "i32", "Kp": "i32"}
        consts = kernel_constants(acc, fa, fb)
        sig.update({c: "constexpr" for c in consts})
        src = ASTSource(_matmul_kernel, sig, consts)
        out[f"matmul {acc}"] = _ptx(triton.compile(src, target=target))
    return out


