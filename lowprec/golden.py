"""Golden files: inputs and lowprec's expected outputs for a kernel developer's test, stored as
one ``.npz`` (no pickle) whose ``metadata`` entry is UTF-8 JSON (op, formats, rounding, seed,
shapes, lowprec version). ``make`` writes one, ``load`` reads and validates it, ``check``
compares a kernel's output with it (``lowprec golden make`` / ``lowprec check``).

Loading uses ``np.load(allow_pickle=False)`` and ``json.loads``: a corrupt or hostile file can
only fail to load, never run code.
"""
from __future__ import annotations

import json
import zipfile

import numpy as np

from . import blocks, cast
from .compare import CompareReport, compare
from .formats import format as _format
from .rounding import mode_name

__all__ = ["make", "save", "load", "check", "OPS"]

FILE_VERSION = 1
OPS = ("round", "encode", "quantize", "matmul")
_REQUIRED = {"round": ("input", "expected"), "encode": ("input", "expected"),
             "quantize": ("input", "expected", "codes", "scale_codes"),
             "matmul": ("a", "b", "c", "expected")}


def _inputs(shape, seed, scale, specials, fmt_max):
    """Seeded float32 inputs: N(0, scale^2), and with ``specials`` one element in 16 replaced
    by one of +-0, +-Inf, NaN, +-fmt max and values just beyond it."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * scale).astype(np.float32)
    if specials and x.size:
        with np.errstate(over="ignore"):                  # beyond float32: Inf
            pool = np.float32([0.0, -0.0, np.inf, -np.inf, np.nan, fmt_max, -fmt_max,
                               fmt_max * 1.0625, -fmt_max * 1.0625, 1e-40, -1e-40])
        mask = rng.random(shape) < 1 / 16
        x[mask] = rng.choice(pool, int(mask.sum()))
    return x


def make(op, fmt, shape, seed, *, rounding="nearest_even", overflow=None, scale=1.0,
         specials=True, axis=-1) -> dict:
    """Arrays and metadata of a golden file: ``op`` in ``OPS`` applied to seeded float32 inputs
    of ``shape`` (``fmt`` a format name for round/encode, a block-format preset for quantize;
    stochastic rounding uses ``seed`` as its Philox seed too). ``matmul``: ``fmt`` a preset of
    ``lp.hardware`` (or an ``lp.Accumulator``), ``shape`` = (M, K, N); A, B and c are seeded
    normal values rounded to nearest-even in the preset's input and addend formats (float32
    where it names none), one in 16 zero with ``specials``."""
    if op not in OPS:
        raise ValueError(f"op={op!r} is not supported; choose one of {list(OPS)}")
    shape = tuple(int(n) for n in shape)
    kw = {"seed": seed} if mode_name(rounding) == "stochastic" else {}
    meta = dict(lowprec_golden=FILE_VERSION, op=op, format=str(fmt), rounding=rounding,
                overflow=overflow, seed=int(seed), shape=list(shape), scale=float(scale),
                specials=bool(specials), lowprec_version=_version())
    if op == "matmul":
        arrays = _matmul(fmt, shape, seed, scale, specials)
        meta["format"] = getattr(fmt, "name", None) or str(fmt)
    elif op == "quantize":
        bf = blocks.block_format(fmt)
        x = _inputs(shape, seed, scale, specials, bf.elem.max)
        bt = blocks.quantize(x, bf, axis, rounding, **kw)
        meta.update(axis=bt.axis, element=bf.elem.name, scale_format=bf.scale_fmt.name,
                    tensor_scale=float(bt.tensor_scale))
        arrays = dict(input=x, expected=bt.dequantize(np.float32), codes=bt.codes,
                      scale_codes=bt.scale_codes)
    else:
        f = _format(fmt)
        x = _inputs(shape, seed, scale, specials, f.max)
        fn = cast.round if op == "round" else cast.encode
        arrays = dict(input=x, expected=fn(x, f, rounding, overflow, **kw))
    meta["arrays"] = {k: [str(v.dtype), list(v.shape)] for k, v in arrays.items()}
    return dict(arrays, metadata=meta)


def _matmul(acc, shape, seed, scale, specials):
    from .accumulate import matmul  # noqa: PLC0415
    from .hardware import resolve  # noqa: PLC0415
    if len(shape) != 3:
        raise ValueError(f"matmul golden files take shape=(M, K, N), got {shape}")
    acc = resolve(acc)
    M, K, N = shape
    rng = np.random.default_rng(seed)

    def draw(shp, fmt):
        x = rng.standard_normal(shp) * scale
        if specials and x.size:
            x[rng.random(shp) < 1 / 16] = 0.0
        return cast.round(x, fmt or "float32", overflow="saturate").astype(np.float32)
    fa, fb = acc.input_formats
    a, b = draw((M, K), fa), draw((K, N), fb)
    c = draw((M, N), acc.addend_format or (None if acc.fmt.bits > 32 else acc.fmt))
    kw = {"seed": seed} if acc.stochastic else {}
    return dict(a=a, b=b, c=c, expected=matmul(a, b, acc, c, **kw))


def save(golden: dict, path) -> None:
    """Write ``make``'s result to ``path`` (.npz; the metadata as a UTF-8 JSON byte array)."""
    arrays = {k: v for k, v in golden.items() if k != "metadata"}
    meta = np.frombuffer(json.dumps(golden["metadata"]).encode(), dtype=np.uint8)
    np.savez(path, metadata=meta, **arrays)


def load(path) -> dict:
    """Read and validate a golden file: its metadata version, op, arrays, dtypes and shapes.
    Raises ValueError naming what is wrong."""
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path}: not a readable .npz golden file ({e})") from None
    if "metadata" not in data:
        raise ValueError(f"{path}: no 'metadata' entry; not a lowprec golden file")
    try:
        meta = json.loads(data.pop("metadata").tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: metadata is not UTF-8 JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("lowprec_golden") != FILE_VERSION:
        raise ValueError(f"{path}: golden file version {meta.get('lowprec_golden')!r} "
                         f"(this lowprec reads version {FILE_VERSION})"
                         if isinstance(meta, dict) else f"{path}: metadata is not an object")
    op = meta.get("op")
    if op not in _REQUIRED:
        raise ValueError(f"{path}: unknown op {op!r}; known: {list(_REQUIRED)}")
    for k in _REQUIRED[op]:
        if k not in data:
            raise ValueError(f"{path}: missing array {k!r} for op {op!r}")
        want = meta.get("arrays", {}).get(k)
        if not want or list(data[k].shape) != want[1]:
            raise ValueError(f"{path}: array {k!r} has shape {data[k].shape}, metadata says "
                             f"{want[1] if want else 'nothing'}")
        if data[k].dtype.name != want[0]:
            raise ValueError(f"{path}: array {k!r} is {data[k].dtype}, metadata says {want[0]}")
    data["metadata"] = meta
    return data


def check(actual, golden, key="expected") -> CompareReport:
    """Compare a kernel's ``actual`` output with the golden array ``key`` (a dict from
    ``load`` or a path), bit for bit, in the format that array holds values of."""
    g = load(golden) if not isinstance(golden, dict) else golden
    meta = g["metadata"]
    if key not in g or key == "metadata":
        raise ValueError(f"key={key!r} is not an array of this golden file; it has "
                         f"{[k for k in g if k != 'metadata']}")
    want = g[key]
    if meta["op"] == "encode" or key in ("codes", "scale_codes"):
        fmt = {"codes": meta.get("element"), "scale_codes": meta.get("scale_format")}.get(
            key, meta["format"])
        got = np.asarray(actual)
        if got.shape != want.shape:
            raise ValueError(f"actual has shape {got.shape}, golden {key!r} has {want.shape}")
        return compare(cast.decode(got, fmt, dtype=np.float64),
                       cast.decode(want, fmt, dtype=np.float64), fmt)
    fmt = meta["format"] if meta["op"] == "round" else "float32"
    if meta["op"] == "matmul" and want.dtype == np.float64:
        fmt = "float64"
    return compare(np.asarray(actual).astype(np.float64), want.astype(np.float64), fmt)


def _version():
    from . import __version__  # noqa: PLC0415
    return __version__
