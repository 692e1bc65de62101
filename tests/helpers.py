"""Oracle tables for the formats under test, built from their parameters (not lowprec's code)."""
from fractions import Fraction

import numpy as np

import lowprec as lp
import oracle

# name -> oracle table, from the parameters in docs/formats.md
SPEC_TABLES = {
    "float8_e5m2": lambda: oracle.float_table(5, 2, 15),
    "float8_e4m3fn": lambda: oracle.float_table(4, 3, 7, inf=None, nan="max_code"),
    "float8_e4m3fnuz": lambda: oracle.float_table(4, 3, 8, inf=None, nan="neg_zero"),
    "float8_e5m2fnuz": lambda: oracle.float_table(5, 2, 16, inf=None, nan="neg_zero"),
    "float8_e4m3b11fnuz": lambda: oracle.float_table(4, 3, 11, inf=None, nan="neg_zero"),
    "float8_e4m3": lambda: oracle.float_table(4, 3, 7),
    "float8_e3m4": lambda: oracle.float_table(3, 4, 3),
    "float6_e3m2fn": lambda: oracle.float_table(3, 2, 3, inf=None, nan=None),
    "float6_e2m3fn": lambda: oracle.float_table(2, 3, 1, inf=None, nan=None),
    "float4_e2m1fn": lambda: oracle.float_table(2, 1, 1, inf=None, nan=None),
    "float8_e8m0fnu": lambda: oracle.float_table(8, 0, 127, signed=False, subnormals=False,
                                                 inf=None, nan="max_code", zero=False),
    "ue4m3": lambda: oracle.float_table(4, 3, 7, signed=False, inf=None, nan="max_code"),
    "float16": lambda: oracle.float_table(5, 10, 15),
    "bfloat16": lambda: oracle.float_table(8, 7, 127),
    # P3109 (bias 2^(K-P-1) signed / 2^(K-P) unsigned; NaN 0x80 / 0xFF; Inf at the top codes)
    "binary8p3se": lambda: oracle.float_table(5, 2, 16, inf="max_code", nan="neg_zero"),
    "binary8p4sf": lambda: oracle.float_table(4, 3, 8, inf=None, nan="neg_zero"),
    "binary8p3ue": lambda: oracle.float_table(6, 2, 32, signed=False, inf="max_code",
                                              nan="max_code"),
    "binary8p1uf": lambda: oracle.float_table(8, 0, 128, signed=False, inf=None, nan="max_code"),
    "int8": lambda: oracle.int_table(8),
    "int4": lambda: oracle.int_table(4),
    "uint4": lambda: oracle.int_table(4, signed=False),
    "mxint8_element": lambda: oracle.int_table(8, frac_bits=6, symmetric=True),
}
SMALL = [n for n in SPEC_TABLES if n not in ("float16", "bfloat16")]
ML_DTYPES = ["float8_e5m2", "float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2fnuz",
             "float8_e4m3b11fnuz", "float8_e4m3", "float8_e3m4", "float6_e3m2fn",
             "float6_e2m3fn", "float4_e2m1fn", "float8_e8m0fnu"]

_cache = {}


def table(name):
    if name not in _cache:
        _cache[name] = SPEC_TABLES[name]()
    return _cache[name]


def oracle_float(code, t, dtype):
    """The oracle's value for a code as ``dtype`` bits (NaN: quiet, sign of the code's top bit
    for signed formats, as ml_dtypes decodes)."""
    v = t.values.get(code)
    if v == "nan" or v is None:
        neg = t.signed and (code >> (t.bits - 1)) & 1
        return np.array(-np.nan if neg else np.nan, dtype=dtype)
    if v == "inf":
        return np.array(np.inf, dtype=dtype)
    if v == "-inf":
        return np.array(-np.inf, dtype=dtype)
    if code == t.neg_zero:
        return np.array(-0.0, dtype=dtype)
    assert isinstance(v, Fraction)
    f = float(v)
    assert Fraction(f) == v
    return np.array(f, dtype=dtype)


_lut_cache = {}


def oracle_floats(codes, t, dtype):
    """Vectorised ``oracle_float`` (negative codes, the oracle's 'no code', give 0)."""
    key = (id(t), np.dtype(dtype).str)
    if key not in _lut_cache:
        n = 1 << t.bits
        _lut_cache[key] = np.array([oracle_float(c, t, dtype) for c in range(n)], dtype=dtype)
    return _lut_cache[key][np.maximum(codes, 0)]


def all_f16():
    return np.arange(65536, dtype=np.uint16).view(np.float16)


def all_bf16():
    import ml_dtypes
    return np.arange(65536, dtype=np.uint16).view(ml_dtypes.bfloat16)


def round_inputs(dtype, n=4000, seed=0):
    """Values over a wide exponent range with NaN, +-Inf, +-0, the smallest subnormal and
    -max in front (float64: a quarter spread over the whole float64 range)."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(n) * np.exp2(rng.integers(-40, 40, n))).astype(dtype)
    if dtype == np.float64:
        x[: n // 4] = np.exp2(rng.integers(-1074, 1020, n // 4)) * rng.standard_normal(n // 4)
    x[:8] = [np.nan, -np.nan, -np.inf, np.inf, -0.0, 0.0, np.finfo(dtype).smallest_subnormal,
             -np.finfo(dtype).max]
    return x


def overflow_inputs(largest):
    """``round_inputs(float32)`` with +-1, 1.5, 2 and 3 times ``largest`` (a format's largest
    value) in front."""
    x = round_inputs(np.float32)
    x[8:16] = np.float32(largest) * np.float32([1, 1.5, 2, 3, -1, -1.5, -2, -3])
    return x


def block_inputs(rng, shape, specials):
    """Block-test values: each row at its own scale; with ``specials`` NaN, +-Inf, -0, a
    subnormal and 3e38 somewhere and a leading run of zeros."""
    x = (rng.standard_normal(shape) * np.exp2(rng.integers(-40, 40, shape[:-1] + (1,)))
         ).astype(np.float32)
    if specials:
        flat = x.reshape(-1)
        for v in (np.nan, np.inf, -np.inf, -0.0, 1e-41, 3e38):
            flat[rng.integers(0, flat.size)] = v
        x.reshape(-1)[: min(32, x.size)] = 0.0
    return x


_M32 = np.uint64(0xFFFFFFFF)


def _mix(x):
    """Wellons' lowbias32 on uint32 values held in uint64 (NumPy arrays or scalars)."""
    x = np.uint64(x) if isinstance(x, int) else x
    x = x ^ (x >> np.uint64(16))
    x = (x * np.uint64(0x7FEB352D)) & _M32
    x = x ^ (x >> np.uint64(15))
    x = (x * np.uint64(0x846CA68B)) & _M32
    return x ^ (x >> np.uint64(16))


def fold_site(site, i):
    """lowprec_jax.fold's site number, rebuilt: mix(mix(site) ^ mix(i + 1))."""
    return int(_mix(_mix(site) ^ _mix(i + 1)))


def _feistel(a, b):
    for c in (0x9E3779B9, 0x7F4A7C15):
        a, b = b, a ^ _mix(b ^ np.uint64(c))
    return a, b


def key_words(key, shape, wide=False, site=0):
    """The documented words of lowprec_jax's ``key=`` (docs/training.md), rebuilt in NumPy:
    with (a, b) the key's two words and s the site number, (k0, k1) = Feistel(a ^ mix(s),
    b ^ mix(s ^ 0x85EBCA6B)) (two rounds of lowbias32 with constants 0x9E3779B9,
    0x7F4A7C15), and element i takes mix(mix(i ^ k0) ^ k1); wide: the high word the same
    from (k2, k3) = Feistel(k0 ^ 0x9E3779B9, k1). Returns uint32 words, or uint64
    (hi << 32 | lo) if wide."""
    import jax                                   # noqa: PLC0415  (JAX tests only)
    d = np.asarray(jax.random.key_data(key)).astype(np.uint64)
    assert d.shape == (2,)
    k0, k1 = _feistel(d[0] ^ _mix(site), d[1] ^ _mix(site ^ 0x85EBCA6B))
    i = np.arange(int(np.prod(shape)), dtype=np.uint64).reshape(shape)
    lo = _mix(_mix(i ^ k0) ^ k1)
    if not wide:
        return lo.astype(np.uint32)
    k2, k3 = _feistel(k0 ^ np.uint64(0x9E3779B9), k1)
    return (_mix(_mix(i ^ k2) ^ k3) << np.uint64(32)) | lo


def matmul_both_paths(A, B, acc, **kw):
    """lp.matmul through both of its paths, the NumPy one for small products and the compiled
    kernels (forced by a zero size threshold): they must give the same bits."""
    small = lp.matmul(A, B, acc, **kw)
    threshold = lp.accumulate.SMALL_PRODUCTS
    lp.accumulate.SMALL_PRODUCTS = 0
    try:
        compiled = lp.matmul(A, B, acc, **kw)
    finally:
        lp.accumulate.SMALL_PRODUCTS = threshold
    u = {2: np.uint16, 4: np.uint32, 8: np.uint64}[small.itemsize]
    assert np.array_equal(small.view(u), compiled.view(u)), "NumPy path != compiled kernel"
    return small
