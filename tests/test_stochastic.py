"""Stochastic rounding: every random value enumerated against the oracle's definition; the
seeded counter-based generator."""
from fractions import Fraction

import numpy as np
import pytest

import lowprec as lp
import oracle
from conftest import bits
from helpers import table

KAT = [  # Random123 kat_vectors for Philox4x32-10: (counter, key, output)
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize("counter,key,out", KAT)
def test_philox_known_answers(counter, key, out):
    from lowprec.rounding import philox4x32
    assert philox4x32(counter, key) == out


def philox_py(counter, key):
    """Philox4x32-10 from Salmon et al. (SC'11), in Python integers: the test's own copy."""
    c, (k0, k1) = list(counter), key
    m = 0xFFFFFFFF
    for _ in range(10):
        p0, p1 = 0xD2511F53 * c[0], 0xCD9E8D57 * c[2]
        c = [(p1 >> 32) ^ c[1] ^ k0, p1 & m, (p0 >> 32) ^ c[3] ^ k1, p0 & m]
        k0, k1 = (k0 + 0x9E3779B9) & m, (k1 + 0xBB67AE85) & m
    return tuple(c)


@pytest.mark.parametrize("counter,key,out", KAT)
def test_the_tests_own_philox_known_answers(counter, key, out):
    assert philox_py(counter, key) == out


def stream(seed, k):
    """Stream word k: word k % 4 of the Philox block at counter k // 4 (rounding.py)."""
    q = k // 4
    return philox_py((q & 0xFFFFFFFF, q >> 32, 0, 0), (seed & 0xFFFFFFFF, seed >> 32))[k % 4]


@pytest.mark.parametrize("seed", [0, 0x1234_5678_9ABC_DEF0, 2**64 - 1])
def test_seeded_words_are_the_philox_stream_at_the_flat_index(seed):
    w = lp.random_bits(seed, (3, 7))
    w64 = lp.random_bits(seed, (21,), wide=True)
    for i in range(21):
        assert int(w.reshape(-1)[i]) == stream(seed, i)
        assert int(w64[i]) == stream(seed, 2 * i) | (stream(seed, 2 * i + 1) << 32)
    far = 2**34 + 3                       # a counter with a non-zero high word
    assert int(lp.random_bits(seed, (1,), offset=far)[0]) == stream(seed, far)
    assert int(lp.random_bits(seed, (2,), True, offset=far)[1]) == \
        stream(seed, 2 * far + 2) | (stream(seed, 2 * far + 3) << 32)


@pytest.mark.parametrize("n", [3, 70001])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_seeded_rounding_uses_the_stream_at_every_size(n, dtype):
    """The vectorised path fills four words per Philox block a chunk at a time, in threads
    for large arrays; the result must equal rounding with those words given as rbits."""
    x = np.random.default_rng(n).standard_normal(n).astype(dtype)
    wide = dtype == np.float64
    rb = np.array([stream(5, i) if not wide else
                   stream(5, 2 * i) | (stream(5, 2 * i + 1) << 32) for i in range(min(n, 64))],
                  np.uint64 if wide else np.uint32)
    for fmt in ("float8_e4m3fn", "bfloat16"):
        got = lp.encode(x, fmt, "stochastic", seed=5)
        assert np.array_equal(got, lp.encode(x, fmt, "stochastic",
                                             rbits=lp.random_bits(5, x.shape, wide)))
        assert np.array_equal(got[:64], lp.encode(x[:64], fmt, "stochastic", rbits=rb))


SR_CASES = ["float8_e4m3fn", "float4_e2m1fn", "float8_e5m2", "bfloat16", "int8",
            "float8_e8m0fnu", "binary8p3se"]


@pytest.mark.parametrize("name", SR_CASES)
@pytest.mark.parametrize("variant", ["srff", "srf", "src", "sr_odd", "sr_nearest_odd"])
@pytest.mark.parametrize("r", [1, 2, 3, 5, 8])
def test_every_random_value_against_the_definition(name, variant, r):
    t = table(name)
    rng = np.random.default_rng(r)
    fin = np.array([float(v) for v in t.finite])
    lo = fin[rng.integers(0, len(fin) - 1, 12)]
    x = (lo + (np.roll(fin, -1)[np.searchsorted(fin, lo)] - lo) * rng.random(12)).astype(
        np.float32)
    x = np.concatenate([x, -x, np.float32([fin[-1] * 1.01])])
    R = np.arange(2**r, dtype=np.uint32)
    for xi in x:
        got = lp.encode(np.full(R.shape, xi, np.float32), name, "stochastic", sr_bits=r,
                        sr_variant=variant, rbits=R)
        want = [oracle.round_exact(oracle.to_fraction(xi), t, "stochastic", None,
                                   sr=(int(Ri), r, variant)) for Ri in R]
        assert got.tolist() == want, float(xi)


@pytest.mark.parametrize("name", ["float8_e4m3fn", "bfloat16", "float4_e2m1fn"])
def test_exact_sr_uses_the_whole_random_word(name):
    t = table(name)
    rng = np.random.default_rng(7)
    x32 = rng.normal(size=200).astype(np.float32)
    R32 = rng.integers(0, 2**32, 200, dtype=np.uint64).astype(np.uint32)
    got = lp.encode(x32, name, "stochastic", rbits=R32)
    want = [oracle.round_exact(Fraction(float(a)), t, "stochastic", None, sr=(int(b), 32, "srff"))
            for a, b in zip(x32, R32)]
    assert got.tolist() == want
    x64 = rng.normal(size=200)
    R64 = rng.integers(0, 2**64, 200, dtype=np.uint64)
    got = lp.encode(x64, name, "stochastic", rbits=R64)
    want = [oracle.round_exact(Fraction(float(a)), t, "stochastic", None, sr=(int(b), 64, "srff"))
            for a, b in zip(x64, R64)]
    assert got.tolist() == want


def test_seed_is_reproducible_and_independent_of_shape_and_chunking():
    x = np.random.default_rng(0).normal(size=(64, 48)).astype(np.float32)
    a = lp.round(x, "e4m3", "stochastic", seed=42)
    b = lp.round(x.reshape(-1), "e4m3", "stochastic", seed=42).reshape(x.shape)
    c = lp.round(x, "e4m3", "stochastic", rbits=lp.random_bits(42, x.shape))
    assert (bits(a) == bits(b)).all() and (bits(a) == bits(c)).all()
    assert not (bits(a) == bits(lp.round(x, "e4m3", "stochastic", seed=43))).all()
    d = lp.round(x, "e4m3", "stochastic", sr_bits=4, seed=42)
    e = lp.round(x, "e4m3", "stochastic", sr_bits=4, rbits=lp.random_bits(42, x.shape) & 15)
    assert (bits(d) == bits(e)).all()


def test_exact_sr_is_unbiased_over_all_random_values():
    """With sr_bits=r and all 2^r values, the mean of the results equals x when d has <= r bits."""
    x = np.float32(1.0 + 5 / 16 * 0.125)          # d = 5/16 of an e4m3 ulp at 1.0
    R = np.arange(16, dtype=np.uint8)
    y = lp.round(np.full(16, x), "e4m3", "stochastic", sr_bits=4, rbits=R)
    assert Fraction(float(y.astype(np.float64).sum())) / 16 == Fraction(float(x))


@pytest.mark.parametrize("name", ["float8_e4m3fn", "float4_e2m1fn", "bfloat16", "float8_e5m2"])
@pytest.mark.parametrize("variant", ["srff", "srf", "src", "sr_odd", "sr_nearest_odd"])
def test_subnormal_range_against_the_definition(name, variant):
    """Below the smallest normal the kernels take a separate path (one exact float addition):
    inputs there, from float32 subnormals up to just under 2^emin, in float32 and float64,
    every random value for r = 4, and whole random words (r = 32 / 64)."""
    t = table(name)
    emin = lp.format(name).emin
    rng = np.random.default_rng(11)
    q = 2.0 ** (emin - lp.format(name).man_bits)
    x = np.concatenate([rng.random(10) * 2.0**emin,            # anywhere below 2^emin
                        q * (np.arange(1, 6) + 0.5),            # exact half quanta
                        q * 2.0 ** -np.arange(3, 40, 6.0),      # far below one quantum
                        [2.0**-149, 3 * 2.0**-149, 2.0**-127]])  # float32 subnormals
    x = x[x < 2.0**emin]
    x = np.concatenate([x, -x])
    for dtype in (np.float32, np.float64):
        xs = x.astype(dtype)
        xs = xs[xs != 0]                       # (zero's sign is checked elsewhere)
        R = np.arange(16, dtype=np.uint32)
        for xi in xs:
            got = lp.encode(np.full(16, xi, dtype), name, "stochastic", sr_bits=4,
                            sr_variant=variant, rbits=R)
            want = [oracle.round_exact(Fraction(float(xi)), t, "stochastic", None,
                                       sr=(int(Ri), 4, variant)) for Ri in R]
            assert got.tolist() == want, (float(xi), dtype)
    x = x[x.astype(np.float32) != 0]
    if variant == "srff":
        for dtype, r, udt in ((np.float32, 32, np.uint32), (np.float64, 64, np.uint64)):
            Rw = rng.integers(0, 2**r, x.size, dtype=np.uint64).astype(udt)
            got = lp.encode(x.astype(dtype), name, "stochastic", rbits=Rw)
            want = [oracle.round_exact(Fraction(float(a)), t, "stochastic", None,
                                       sr=(int(b), r, "srff"))
                    for a, b in zip(x.astype(dtype), Rw)]
            assert got.tolist() == want, dtype


def test_the_word_width_follows_r_not_the_work_type():
    """E8M0 from float32 works in float64 but takes r = 32 random bits: the 32-bit stream word
    S[i], as every backend reads it; float64 inputs with sr_bits=8 too. Only r > 32 takes
    64-bit words."""
    x = np.random.default_rng(3).standard_normal(3000)
    for xs, fmt, kw, wide in ((x.astype(np.float32), "float8_e8m0fnu", {}, False),
                              (x, "float8_e4m3fn", dict(sr_bits=8), False),
                              (x, "float8_e4m3fn", {}, True)):
        want = lp.encode(xs, fmt, "stochastic", rbits=lp.random_bits(4, xs.shape, wide), **kw)
        assert np.array_equal(lp.encode(xs, fmt, "stochastic", seed=4, **kw), want)


@pytest.mark.parametrize("variant", ["src", "sr_odd", "sr_nearest_odd"])
@pytest.mark.parametrize("r", [1, 2, 3, 5])
def test_discarded_fractions_at_r_bit_ties(variant, r):
    """d exactly halfway between two r-bit fractions, (2j+1) / 2^(r+1), where the three
    'round d to r bits' variants part: every random word R, against the definitions."""
    name = "float8_e4m3fn"
    t = table(name)
    fin = [v for v in t.finite if v > 0][:40]
    xs = []
    for lo, hi in zip(fin, fin[1:]):
        for j in range(1 << r):
            xs.append(lo + (hi - lo) * oracle.Fr(2 * j + 1, 2 ** (r + 1)))
    x = np.array([float(v) for v in xs], np.float32)
    assert all(oracle.to_fraction(v) == w for v, w in zip(x, xs))     # exact in float32
    R = np.arange(2**r, dtype=np.uint32)
    got = lp.encode(np.repeat(x, R.size), name, "stochastic", sr_bits=r, sr_variant=variant,
                    rbits=np.tile(R, x.size))
    want = [oracle.round_exact(w, t, "stochastic", None, sr=(int(Ri), r, variant))
            for w in xs for Ri in R]
    assert got.tolist() == want


@pytest.mark.parametrize("fmt,gname", [("float8_e4m3fn", "format_info_ocp_e4m3"),
                                       ("float8_e5m2", "format_info_ocp_e5m2"),
                                       ("float6_e2m3fn", "format_info_ocp_e2m3"),
                                       ("binary8p3se", None)])
def test_sr_nearest_odd_is_gfloats_stochastic_odd(fmt, gname):
    """gfloat 0.5.2 (the P3109 reference implementation) as the oracle: its StochasticOdd and
    Stochastic are our sr_nearest_odd and src, on ties and on random values, every R."""
    import gfloat                                   # pinned in the dev extra and the lock
    import gfloat.formats as gf
    fi = getattr(gf, gname) if gname else gf.format_info_p3109(8, 3)
    rng = np.random.default_rng(7)
    fin = lp.format(fmt).values()
    fin = fin[(fin > 0) & (fin < fin[-1])]
    for r in (2, 4):
        i = rng.integers(0, len(fin) - 1, 24)
        lo, hi = fin[i], fin[i + 1]
        frac = np.concatenate([(2 * rng.integers(0, 2**r, 12) + 1) / 2 ** (r + 1),
                               rng.random(12)])               # ties, then anything
        x = (lo + (hi - lo) * frac).astype(np.float32)
        x = np.concatenate([x, -x])
        R = np.arange(2**r, dtype=np.uint32)
        for variant, mode in (("sr_nearest_odd", gfloat.RoundMode.StochasticOdd),
                              ("src", gfloat.RoundMode.Stochastic)):
            got = lp.round(np.repeat(x, R.size), fmt, "stochastic", sr_bits=r,
                           sr_variant=variant, rbits=np.tile(R, x.size), dtype=np.float64)
            want = [gfloat.round_float(fi, float(v), mode, True, int(Ri), r)
                    for v in x for Ri in R]
            assert np.array_equal(got, np.array(want)), (variant, r)
