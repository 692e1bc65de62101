"""Byte layouts of sub-byte element codes, as GPU kernels store them.

* 4-bit codes (FP4 E2M1, INT4): two per byte, element 2j in the low nibble and 2j+1 in the high
  nibble (the layout of PTX ``cvt.rn.satfinite.e2m1x2.f32``'s packed pair, Transformer Engine,
  torchao and cuBLAS; docs/blocks.md).
* 6-bit codes (FP6 E3M2/E2M3): four per three bytes, little-endian: element 4j+i occupies bits
  6i .. 6i+5 of the 24-bit little-endian word made of bytes 3j, 3j+1, 3j+2 (the FP4 rule
  extended: lower elements in lower bits).
* 8-bit codes: one per byte (unchanged).

Packing runs along the last axis; a length that does not fill the last byte(s) is padded with
code 0, and ``unpack`` takes the original length back.

Block scales, as cuBLAS and the Blackwell tensor cores read them (cuBLAS documentation, "1D
Block Scaling Factors Layout"; torchao's ``to_blocked``): the (rows, cols) scale matrix (one
row per row of the operand, one column per block along K) is padded with zeros to multiples of
128 rows and 4 columns and cut into 128 x 4 tiles, stored one after another (row tiles outer,
column tiles inner), 512 bytes each; inside a tile, scale (r, c) is at byte
(r mod 32) * 16 + (r div 32) * 4 + c.
"""
from __future__ import annotations

import numpy as np

__all__ = ["pack", "unpack", "swizzle_scales", "unswizzle_scales"]

_PER = {4: (2, 1), 6: (4, 3), 8: (1, 1)}       # bits -> (codes per group, bytes per group)


def _bits_of(fmt):
    bits = fmt if isinstance(fmt, (int, np.integer)) and not isinstance(fmt, bool) else None
    if bits is None:
        from .formats import format as _format  # noqa: PLC0415
        bits = _format(fmt).bits
    if bits not in _PER:
        raise ValueError(f"pack/unpack handle 4-, 6- and 8-bit codes; got {bits} bits "
                         f"(fmt={fmt!r})")
    return int(bits)


def pack(codes, fmt) -> np.ndarray:
    """Pack ``codes`` (unsigned ints of ``fmt``'s width: a format, its name, or 4 / 6 / 8) into
    uint8 bytes along the last axis, in the layout above."""
    bits = _bits_of(fmt)
    c = np.asarray(codes)
    if c.dtype.kind not in "ui" or c.ndim == 0:
        raise TypeError(f"codes must be an integer array with at least one axis, got "
                        f"{c.dtype} of shape {c.shape}")
    if c.size and (int(c.min()) < 0 or int(c.max()) >= 1 << bits):
        raise ValueError(f"codes must lie in 0 .. {(1 << bits) - 1} for {bits}-bit packing")
    per, nbytes = _PER[bits]
    n = c.shape[-1]
    pad = -n % per
    c = c.astype(np.uint32)
    if pad:
        c = np.concatenate([c, np.zeros(c.shape[:-1] + (pad,), np.uint32)], axis=-1)
    g = c.reshape(c.shape[:-1] + (-1, per))
    word = np.zeros(g.shape[:-1], np.uint32)
    for i in range(per):                             # lower elements in lower bits
        word |= g[..., i] << np.uint32(bits * i)
    out = np.stack([(word >> np.uint32(8 * b)) & np.uint32(0xFF) for b in range(nbytes)],
                   axis=-1)
    return out.astype(np.uint8).reshape(c.shape[:-1] + (-1,))


def unpack(packed, fmt, n=None) -> np.ndarray:
    """The codes ``pack`` stored: uint8 array (..., n), ``n`` (default: every slot) the
    original length along the last axis."""
    bits = _bits_of(fmt)
    p = np.asarray(packed)
    if p.dtype != np.uint8 or p.ndim == 0:
        raise TypeError(f"packed must be a uint8 array with at least one axis, got {p.dtype} "
                        f"of shape {p.shape}")
    per, nbytes = _PER[bits]
    if p.shape[-1] % nbytes:
        raise ValueError(f"{bits}-bit packing uses groups of {nbytes} bytes; the last axis has "
                         f"{p.shape[-1]}")
    cap = p.shape[-1] // nbytes * per
    n = cap if n is None else n
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not cap - per < n <= cap:
        raise ValueError(f"n={n!r}: {p.shape[-1]} bytes hold {cap} codes of {bits} bits, so n "
                         f"must be in {max(cap - per + 1, 0)} .. {cap}")
    g = p.reshape(p.shape[:-1] + (-1, nbytes)).astype(np.uint32)
    word = np.zeros(g.shape[:-1], np.uint32)
    for b in range(nbytes):
        word |= g[..., b] << np.uint32(8 * b)
    mask = np.uint32((1 << bits) - 1)
    out = np.stack([(word >> np.uint32(bits * i)) & mask for i in range(per)], axis=-1)
    return out.astype(np.uint8).reshape(p.shape[:-1] + (-1,))[..., :n]


def _scale_offsets(rows, cols):
    """Byte offset of each scale (r, c) in the swizzled layout (the rule above)."""
    r = np.arange(rows)[:, None]
    c = np.arange(cols)[None, :]
    tile = (r // 128) * (-(-cols // 4)) + c // 4
    return tile * 512 + (r % 32) * 16 + (r % 128) // 32 * 4 + c % 4


def swizzle_scales(scales) -> np.ndarray:
    """A (rows, cols) matrix of block-scale codes (uint8) in cuBLAS's 128 x 4 tiled layout
    (module docstring): a flat uint8 array of 128 * ceil(rows / 128) * 4 * ceil(cols / 4)
    bytes, the padding zero."""
    s = np.asarray(scales)
    if s.dtype != np.uint8 or s.ndim != 2:
        raise TypeError(f"scales must be a 2-D uint8 array (rows, blocks), got {s.dtype} of "
                        f"shape {s.shape}")
    rows, cols = s.shape
    out = np.zeros(128 * -(-rows // 128) * 4 * -(-cols // 4), np.uint8)
    out[_scale_offsets(rows, cols)] = s
    return out


def unswizzle_scales(swizzled, rows, cols) -> np.ndarray:
    """The (rows, cols) block-scale matrix that ``swizzle_scales`` laid out (any shape of
    ``swizzled`` with the padded byte count)."""
    s = np.asarray(swizzled)
    if s.dtype != np.uint8:
        raise TypeError(f"swizzled scales must be uint8, got {s.dtype}")
    for name, v in (("rows", rows), ("cols", cols)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise ValueError(f"{name}={v!r} must be an int >= 0")
    need = 128 * -(-rows // 128) * 4 * -(-cols // 4)
    if s.size != need:
        raise ValueError(f"swizzled scales of a ({rows}, {cols}) matrix take {need} bytes "
                         f"(padded to 128 x 4 tiles); got {s.size} (shape {s.shape})")
    return s.reshape(-1)[_scale_offsets(rows, cols)]
