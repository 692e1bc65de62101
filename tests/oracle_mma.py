"""Exact-rational oracle for accumulator models (docs/matrix-units.md), written from the definitions.
Shares no code with lowprec. Formats are IEEE-style (p bits of precision, normal exponents
emin..emax, subnormals, Inf on overflow)."""
from __future__ import annotations

from fractions import Fraction as Fr

INF = float("inf")


def floor_log2(x: Fr) -> int:
    x = abs(x)
    e = x.numerator.bit_length() - x.denominator.bit_length()
    return e - 1 if Fr(2) ** e > x else e


def round_ieee(x, p, emin, emax, mode):
    """x (Fraction, or +-inf) rounded to precision p, exponent range [emin, emax]: a Fraction or
    +-inf. Modes: nearest_even, nearest_away, toward_zero, up, down, odd."""
    if isinstance(x, float) or x == 0:               # +-Inf, NaN (IEEE sums of them) or 0
        return x
    neg = x < 0
    ax = abs(x)
    e = max(floor_log2(ax), emin)
    q = Fr(2) ** (e - p + 1)
    n = ax / q
    fl = n.numerator // n.denominator
    rest = n - fl
    if rest == 0:
        k = fl
    elif mode == "nearest_even":
        k = fl + (rest > Fr(1, 2) or (rest == Fr(1, 2) and fl % 2 == 1))
    elif mode == "nearest_away":
        k = fl + (rest >= Fr(1, 2))
    elif mode == "toward_zero":
        k = fl
    elif mode == "up":
        k = fl if neg else fl + 1
    elif mode == "down":
        k = fl + 1 if neg else fl
    elif mode == "odd":
        k = fl if fl % 2 == 1 else fl + 1
    else:
        raise ValueError(mode)
    r = k * q
    vmax = (2 - Fr(2) ** (1 - p)) * Fr(2) ** emax
    if r > vmax:
        away = mode in ("nearest_even", "nearest_away") or (mode == "up" and not neg) or (
            mode == "down" and neg)
        r = INF if away else vmax
    return -r if neg else r


def exponent(x: Fr, emin: int) -> int:
    """The exponent a format with normal range from 2^emin gives x != 0."""
    return max(floor_log2(x), emin)


def _keep(t: Fr, how: str) -> int:
    """Integer kept from t by a fused adder: truncate toward zero, floor, or nearest-even."""
    fl = t.numerator // t.denominator
    if how == "floor":
        return fl
    if how == "truncate":
        return fl if t >= 0 or fl == t else fl + 1
    rest = t - fl
    return fl + (rest > Fr(1, 2) or (rest == Fr(1, 2) and fl % 2 == 1))


def fused_step(a, b, c, F, align_c, terms, a_emin, b_emin, c_emin, out, zero_exp=None):
    """One fused dot-add step: products a_k*b_k exact with exponent e_a + e_b (each as its
    input format sees it), E the largest (and c's, if aligned), each term kept to F fraction
    bits below E, exact sum, one rounding ``out`` = (p, emin, emax, mode). ``zero_exp``: a
    zero product, or a zero c that joins the alignment, counts with this exponent in E."""
    has_zero = any(x == 0 or y == 0 for x, y in zip(a, b)) or (align_c and c == 0)
    return fused_terms([(x * y, exponent(x, a_emin) + exponent(y, b_emin))
                        for x, y in zip(a, b) if x != 0 and y != 0], c, F, align_c, terms,
                       c_emin, out, zero_exp if has_zero else None)


def fused_terms(terms_list, c, F, align_c, terms, c_emin, out, zero_exp=None):
    """``fused_step`` on given (value, alignment exponent) terms; ``zero_exp`` joins E when
    given (and some term or an aligned c is not zero)."""
    exps = [e for _, e in terms_list]
    if align_c and c != 0:
        exps.append(exponent(c, c_emin))
    if exps and zero_exp is not None:
        exps.append(zero_exp)
    if not exps:
        return round_ieee(c, *out)
    E = max(exps)
    scale = Fr(2) ** (F - E)
    S = sum((_keep(v * scale, terms) for v, _ in terms_list), 0)
    if align_c and c != 0:
        S += _keep(c * scale, terms)
    total = S / scale
    if not align_c:
        total += c
    return round_ieee(total, *out)


def group_step(groups, c, F, c_emin, e_zero, out):
    """One step of the block-scaled FP4 instructions (tcgen05.mma kind::mxf4nvf4 / mxf4) as
    MMA-Sim describes them (arXiv:2511.10909): ``groups`` holds (v, label) with v a group's
    exact sum of products times both its scales and label the sum of the two scales'
    exponents, or None (label e_zero) for a zero scale or a group whose products are all
    zero; c's label is its exponent, e_zero when c is 0. With E the largest label, each v and
    c is truncated toward zero to F fraction bits below E, the sum is exact and rounded once."""
    labels = [e_zero if lab is None else lab for _, lab in groups]
    labels.append(exponent(c, c_emin) if c != 0 else e_zero)
    scale = Fr(2) ** (F - max(labels))
    S = sum((_keep(v * scale, "truncate") for v, _ in groups), 0) + _keep(c * scale, "truncate")
    return round_ieee(Fr(S) / scale, *out)


def fused_dot(a, b, c, n, F, align_c, terms, a_emin, b_emin, c_emin, out, promote=None,
              outer=None, zero_exp=None):
    """Chained steps of n products; ``promote`` = k: every k products the partial sum (from
    0) is added into ``outer`` = (p, emin, emax, mode), which starts at c."""
    acc = Fr(0) if promote else c
    big = c
    for k0 in range(0, len(a), n):
        acc = fused_step(a[k0:k0 + n], b[k0:k0 + n], acc, F, align_c, terms, a_emin, b_emin,
                         c_emin, out, zero_exp)
        k1 = min(k0 + n, len(a))
        if promote and (k1 % promote == 0 or k1 == len(a)):
            big = round_ieee(big + acc, *outer)
            acc = Fr(0)
    return big if promote else acc


def _floor_to(x: Fr, q: Fr) -> Fr:
    """The largest multiple of q not above x."""
    t = x / q
    return (t.numerator // t.denominator) * q


def _trunc_to(x: Fr, q: Fr) -> Fr:
    """x cut toward zero to a multiple of q."""
    return _floor_to(x, q) if x >= 0 else -_floor_to(-x, q)


def floored_join_step(a, b, c, F, F2, split, drop, a_emin, b_emin, c_emin, out):
    """One step of the CDNA3 MFMA model (MMA-Sim ``tr_fdpa`` / ``gtr_fdpa``, written from its
    description): products at positions i mod ``split`` truncated to F fraction bits below
    their own largest exponent (e_a + e_b) and summed; those sums floored to F bits below the
    joint largest Ed; with e = max(Ed, exponent of c): the products' sum floored to F2 + 1
    fraction bits below e, c floored to F bits below e (zero if ``drop`` and c lies more than
    F + 1 binades below e); their exact sum floored to F2 fraction bits below its own
    exponent (at least c_emin); one rounding ``out``."""
    groups = []
    for r in range(split):
        terms = [(x * y, exponent(x, a_emin) + exponent(y, b_emin))
                 for i, (x, y) in enumerate(zip(a, b)) if i % split == r and x * y != 0]
        if terms:
            Er = max(e for _, e in terms)
            groups.append((Er, sum(_trunc_to(v, Fr(2) ** (Er - F)) for v, _ in terms)))
    ec = exponent(c, c_emin) if c != 0 else c_emin
    if groups:
        Ed = max(Er for Er, _ in groups)
        Sd = sum(_floor_to(S, Fr(2) ** (Ed - F)) for _, S in groups)
        e = max(Ed, ec)
        T = _floor_to(Sd, Fr(2) ** (e - F2 - 1))
    else:
        e, T = ec, Fr(0)
    if c != 0 and not (drop and ec < e - F - 1):
        T += _floor_to(c, Fr(2) ** (e - F))
    if T != 0:
        T = _floor_to(T, Fr(2) ** (max(floor_log2(T), c_emin) - F2))
    return round_ieee(T, *out)


def floored_dot(a, b, c, n, F, F2, split, drop, a_emin, b_emin, c_emin, out):
    """``floored_join_step`` chained along K in steps of n products."""
    for k0 in range(0, len(a), n):
        c = floored_join_step(a[k0:k0 + n], b[k0:k0 + n], c, F, F2, split, drop, a_emin,
                              b_emin, c_emin, out)
    return c


def ordered_sum(products, c, order, fmt, block=None, tree=None):
    """Sum in a given order, each addition rounded once into fmt = (p, emin, emax, mode)."""
    def add(x, y):
        return round_ieee(x + y, *fmt)
    if order == "sequential":
        s = c
        for p in products:
            s = add(s, p)
        return s
    def pw(xs):                                   # recursive halves
        if len(xs) == 1:
            return xs[0]
        h = len(xs) // 2
        return add(pw(xs[:h]), pw(xs[h:]))
    if order == "pairwise":
        return add(pw(products), c) if products else round_ieee(c, *fmt)
    if order == "blocked_pairwise":
        s = c
        for k0 in range(0, len(products), block):
            s = add(s, pw(products[k0:k0 + block]))
        return s
    if order == "blocked":
        s = c
        for k0 in range(0, len(products), block):
            chunk = products[k0:k0 + block]
            t = chunk[0]
            for p in chunk[1:]:
                t = add(t, p)
            s = add(s, t)
        return s
    if order == "tree":
        def walk(node):
            if isinstance(node, int):
                return products[node]
            t = walk(node[0])
            for child in node[1:]:
                t = add(t, walk(child))
            return t
        return add(walk(tree), c)
    raise ValueError(order)
