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

__all__ = ["make", "save", "load", "check", "OPS", "LAYOUTS"]

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


def make(op, fmt, shape, seed, *, rounding=None, overflow=None, scale=1.0,
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
    if rounding is None:                                 # the format's own, written down
        rounding = _format(fmt).rounding if op in ("round", "encode") else "nearest_even"
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


MAX_BYTES = 1 << 30              # default limit on one array read from a golden file
_MAX_META = 1 << 20
_META_TYPES = {"lowprec_golden": int, "op": str, "format": str, "arrays": dict, "seed": int,
               "shape": list, "rounding": str}
_QUANTIZE_TYPES = {"axis": int, "element": str, "scale_format": str}


def _read(zf, name, path, max_bytes, decl=False):
    """One member read in one pass: its .npy header checked first (numbers only, at most
    ``max_bytes``, and, unless ``decl`` is False, the [dtype, shape] the metadata declares,
    ``decl``), then its data."""
    with zf.open(zf.getinfo(name + ".npy")) as f:
        try:
            version = np.lib.format.read_magic(f)
            shape, fortran, dtype = (np.lib.format.read_array_header_1_0(f) if version == (1, 0)
                                     else np.lib.format.read_array_header_2_0(f))
        except ValueError as e:
            raise ValueError(f"{path}: member {name}.npy is not a .npy array ({e})") from None
        if dtype.hasobject:
            raise ValueError(f"{path}: array {name!r} holds Python objects; golden arrays "
                             "are numbers only")
        nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
        if nbytes > max_bytes:
            raise ValueError(f"{path}: array {name!r} declares shape {shape} of {dtype} = "
                             f"{nbytes} bytes, above the limit of {max_bytes} bytes "
                             "(max_bytes= / --max-bytes to allow more)")
        if decl is None:
            raise ValueError(f"{path}: array {name!r} is in the file, metadata says nothing "
                             "of it")
        if decl is not False and list(shape) != decl[1]:
            raise ValueError(f"{path}: array {name!r} has shape {shape}, metadata says "
                             f"{decl[1]}")
        if decl is not False and dtype.name != decl[0]:
            raise ValueError(f"{path}: array {name!r} is {dtype}, metadata says {decl[0]}")
        raw = f.read(nbytes)
    if len(raw) != nbytes:
        raise ValueError(f"{path}: array {name!r} is cut short ({len(raw)} of {nbytes} bytes)")
    return np.frombuffer(raw, dtype).reshape(shape, order="F" if fortran else "C").copy()


def _check_meta(meta, path):
    """The metadata schema: field types, the op, the arrays table and the formats it names."""
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: metadata is a JSON {type(meta).__name__}, not an object")
    if meta.get("lowprec_golden") != FILE_VERSION:
        raise ValueError(f"{path}: golden file version {meta.get('lowprec_golden')!r} (this "
                         f"lowprec reads version {FILE_VERSION})")
    op = meta.get("op")
    if op not in _REQUIRED:
        raise ValueError(f"{path}: unknown op {op!r}; known: {list(_REQUIRED)}")
    types = dict(_META_TYPES, **(_QUANTIZE_TYPES if op == "quantize" else {}))
    for k, t in types.items():
        if k not in meta:
            raise ValueError(f"{path}: metadata has no {k!r} field")
        if not isinstance(meta[k], t) or isinstance(meta[k], bool):
            raise ValueError(f"{path}: metadata field {k!r} is {meta[k]!r}, not a "
                             f"{t.__name__}")
    for k, v in meta["arrays"].items():
        if not (isinstance(v, list) and len(v) == 2 and isinstance(v[0], str) and
                isinstance(v[1], list) and all(isinstance(n, int) and not isinstance(n, bool)
                                               and n >= 0 for n in v[1])):
            raise ValueError(f"{path}: metadata arrays[{k!r}] is {str(v)[:80]}; each entry is "
                             "[dtype name, [sizes]]")
    try:
        if op == "quantize":
            bf = blocks.block_format(meta["format"])
            if (meta["element"], meta["scale_format"]) != (bf.elem.name, bf.scale_fmt.name):
                raise ValueError(f"{path}: metadata says element {meta['element']!r} and scale "
                                 f"{meta['scale_format']!r}, but {bf.name} has "
                                 f"{bf.elem.name!r} and {bf.scale_fmt.name!r}")
        elif op == "matmul":
            from .hardware import resolve  # noqa: PLC0415
            resolve(meta["format"])
        else:
            _format(meta["format"])
    except (ValueError, TypeError) as e:
        raise ValueError(f"{path}: metadata format {meta['format']!r}: {e}") from None


def load(path, *, keys=None, max_bytes=MAX_BYTES, verify=True) -> dict:
    """Read and validate a golden file; raises ValueError naming what is wrong.

    Checked in order, before any large allocation: a .npz (zip) file; its metadata (at most
    1 MiB of UTF-8 JSON) against the schema (field types, a known op, formats that exist); each
    needed array's declared dtype and shape against the metadata, and its size against
    ``max_bytes``. Only the arrays the op needs (and ``keys``) are decompressed. ``verify``:
    for round, encode and quantize files, the expected arrays must be what the metadata
    describes (recomputed from the input), so a file whose metadata names another format is
    refused rather than passed."""
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
    except OSError as e:
        raise ValueError(f"{path}: cannot be read ({e.strerror})") from None
    if magic == b"\x93NUMPY":
        raise ValueError(f"{path} is a .npy array, not a golden file (a .npz written by "
                         "`lowprec golden make` or lp.golden.save)")
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise ValueError(f"{path}: not a readable .npz golden file ({e})") from None
    with zf:
        names = {n[:-4] for n in zf.namelist() if n.endswith(".npy")}
        if "metadata" not in names:
            raise ValueError(f"{path}: no 'metadata' entry; not a lowprec golden file")
        meta_arr = _read(zf, "metadata", path, _MAX_META)
        if meta_arr.dtype != np.uint8 or meta_arr.ndim != 1:
            raise ValueError(f"{path}: metadata must be a 1-D uint8 array of UTF-8 JSON, got "
                             f"{meta_arr.dtype} {meta_arr.shape}")
        try:
            meta = json.loads(meta_arr.tobytes().decode())
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{path}: metadata is not UTF-8 JSON ({e})") from None
        except RecursionError:
            raise ValueError(f"{path}: metadata JSON is nested too deeply") from None
        _check_meta(meta, path)
        op = meta["op"]
        want = list(_REQUIRED[op]) + [k for k in (keys or ()) if k not in _REQUIRED[op]]
        data = {}
        for k in want:
            if k not in names:
                raise ValueError(f"{path}: missing array {k!r} for op {op!r}" if k in
                                 _REQUIRED[op] else f"key={k!r} is not an array of this "
                                 f"golden file; it has {sorted(names - {'metadata'})}")
            data[k] = _read(zf, k, path, max_bytes, meta["arrays"].get(k))
    if verify:
        _verify(data, meta, path)
    data["metadata"] = meta
    return data


def _verify(data, meta, path):
    """The expected arrays of round / encode / quantize files recomputed from the input."""
    op, fmt = meta["op"], meta["format"]
    kw = {"seed": meta["seed"]} if mode_name(meta["rounding"]) == "stochastic" else {}
    try:
        if op == "quantize":
            bt = blocks.quantize(data["input"], fmt, meta["axis"], meta["rounding"], **kw)
            got = dict(codes=bt.codes, scale_codes=bt.scale_codes,
                       expected=bt.dequantize(np.float32))
        elif op in ("round", "encode"):
            fn = cast.round if op == "round" else cast.encode
            got = dict(expected=fn(data["input"], fmt, meta["rounding"], meta.get("overflow"),
                                   **kw))
        else:
            return
    except (ValueError, TypeError) as e:
        raise ValueError(f"{path}: its metadata ({op} {fmt!r}, {meta['rounding']}) does not "
                         f"apply to its input: {e}") from None
    for k, g in got.items():
        have = data[k]
        same = (g.shape == have.shape and g.dtype == have.dtype and
                (g.view(f"u{g.dtype.itemsize}") == have.view(f"u{have.dtype.itemsize}")).all())
        if not same:
            n = (int((g.view(f"u{g.dtype.itemsize}") != have.view(f"u{g.dtype.itemsize}"))
                     .sum()) if g.shape == have.shape and g.dtype == have.dtype else have.size)
            raise ValueError(
                f"{path}: array {k!r} is not {op}(input, {fmt!r}, {meta['rounding']!r}) as its "
                f"metadata says ({n} of {have.size} elements differ): the metadata names the "
                f"wrong format or rounding, or the file was written by another lowprec "
                f"(file: {meta.get('lowprec_version')}, this: {_version()}). "
                "Remake it with `lowprec golden make`, or pass verify=False / --no-verify")


LAYOUTS = ("plain", "fp4x2", "cublas-scales")


def _golden_format(g, key, fmt):
    """The format the golden array ``key`` is compared in, and whether it holds codes."""
    meta = g["metadata"]
    codes = meta["op"] == "encode" or key in ("codes", "scale_codes")
    if fmt is not None:
        return _format(fmt), codes
    if key == "codes":
        return _format(meta["element"]), True
    if key == "scale_codes":
        return _format(meta["scale_format"]), True
    if meta["op"] in ("round", "encode"):
        return _format(meta["format"]), codes
    if meta["op"] == "matmul":
        from .hardware import resolve  # noqa: PLC0415
        out = resolve(meta["format"]).fmt
        want = g[key].astype(np.float64)
        if g[key].dtype == np.float64:
            return _format("float64"), False
        if out.bits < 32 and (cast.round(want, out, overflow="saturate") == want).all():
            return out, False                          # a narrow output: its own ulps
    return _format("float32"), False


def _apply_layout(actual, want, layout, fmt, key):
    """``actual`` in the golden array's layout: fp4 bytes unpacked, swizzled scales put back,
    block codes (rows, cols) compared as the kernel wrote them (the golden reshaped)."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout={layout!r} is not known; choose one of {list(LAYOUTS)}")
    if layout == "fp4x2":
        if fmt.bits != 4:
            raise ValueError(f"layout='fp4x2' holds 4-bit codes; the golden array {key!r} is "
                             f"{fmt.name} ({fmt.bits} bits)")
        n = want.shape[-1] * (want.shape[-2] if key == "codes" and want.ndim >= 2 else 1)
        if actual.dtype != np.uint8 or actual.ndim == 0 or actual.shape[-1] * 2 < n:
            raise ValueError(f"layout='fp4x2': actual must be uint8 bytes, two codes each, "
                             f"with at least {(n + 1) // 2} along its last axis; got "
                             f"{actual.dtype} {actual.shape}")
        from .packing import unpack  # noqa: PLC0415
        actual = unpack(actual, 4, actual.shape[-1] * 2)
    elif layout == "cublas-scales":
        if key != "scale_codes":
            raise ValueError("layout='cublas-scales' applies to key='scale_codes', got key="
                             f"{key!r}")
        from .packing import unswizzle_scales  # noqa: PLC0415
        rows, cols = int(np.prod(want.shape[:-1])), want.shape[-1]
        return unswizzle_scales(actual, rows, cols), want.reshape(rows, cols)
    if actual.shape != want.shape and actual.size == want.size and want.ndim >= 2 and \
            actual.shape == want.shape[:-2] + (want.shape[-2] * want.shape[-1],):
        return actual, want.reshape(actual.shape)     # block codes as (rows, cols)
    if actual.shape != want.shape:
        raise ValueError(f"actual has shape {actual.shape}, golden {key!r} has {want.shape}"
                         + (" (merged last two axes also accepted)" if want.ndim >= 2 else ""))
    return actual, want


def check(actual, golden, key="expected", *, fmt=None, layout="plain", show=10,
          strict_nan=False) -> CompareReport:
    """Compare a kernel's ``actual`` output with the golden array ``key`` (a dict from
    ``load`` or a path) bit for bit (``compare``'s report).

    The format is the one the golden array holds (element / scale format for ``codes`` /
    ``scale_codes``, the file's format for round and encode, a matmul's output format when its
    values all lie in it, else float32), or ``fmt``. Either side may hold values or (integer
    arrays) codes. ``layout``: ``"plain"``; ``"fp4x2"``: actual is uint8 bytes with two FP4
    codes each (``lp.packing``); ``"cublas-scales"``: actual is block scales in cuBLAS's
    swizzled 128 x 4 layout (``lp.packing.swizzle_scales``). Block codes may also be given as
    (rows, cols), the golden's (rows, blocks, k) merged."""
    g = load(golden, keys=(key,)) if not isinstance(golden, dict) else golden
    if key not in g or key == "metadata":
        raise ValueError(f"key={key!r} is not an array of this golden file; it has "
                         f"{[k for k in g if k != 'metadata']}")
    f, _ = _golden_format(g, key, fmt)
    got, want = _apply_layout(np.asarray(actual), g[key], layout, f, key)
    return compare(got, want, f, show=show, strict_nan=strict_nan)


def _version():
    from . import __version__  # noqa: PLC0415
    return __version__
