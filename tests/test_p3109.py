"""P3109 formats against entries of the working group's public value tables
(github.com/P3109/Public, 'Value Tables/HexStrings/K8/...', values as printed there; those
tables print the NaN code as 'Inf', so specials are checked from the interim report's rules:
signed NaN 0x80, unsigned NaN 0xFF, extended domain Inf at the top codes)."""
import numpy as np
import pytest

import lowprec as lp

TABLES = {
    "binary8p3se": [(0x00, "0x0p+0"), (0x01, "0x0.8p-16"), (0x02, "0x0.1p-12"),
                    (0x03, "0x0.18p-12"), (0x04, "0x1p-15"), (0x41, "0x1.4p+0"),
                    (0x7E, "0x1.8p+15"), (0x7F, "inf"), (0x81, "-0x0.8p-16"),
                    (0xFE, "-0x1.8p+15"), (0xFF, "-inf")],
    "binary8p3ue": [(0x00, "0x0p+0"), (0x01, "0x0.8p-32"), (0x04, "0x1p-31"),
                    (0x80, "0x1p+0"), (0xBD, "0x1.4p+15"), (0xFD, "0x1.4p+31"), (0xFE, "inf")],
    "binary8p1se": [(0x01, "0x1p-63"), (0x3F, "0x1p-1"), (0x40, "0x1p+0"), (0x7E, "0x1p+62"),
                    (0x7F, "inf"), (0xBF, "-0x1p-1"), (0xFE, "-0x1p+62"), (0xFF, "-inf")],
}
NAN = {"binary8p3se": 0x80, "binary8p3ue": 0xFF, "binary8p1se": 0x80}


@pytest.mark.parametrize("name", list(TABLES))
def test_values_match_the_p3109_tables(name):
    codes = np.array([c for c, _ in TABLES[name]])
    want = np.array([float.fromhex(v) if v[-3:] != "inf" else float(v) for _, v in TABLES[name]])
    got = lp.decode(codes, name, dtype=np.float64)
    assert (got.view(np.uint64) == want.view(np.uint64)).all()
    assert np.isnan(lp.decode(np.array([NAN[name]]), name)).all()
    assert lp.encode(np.array([np.nan]), name)[0] == NAN[name]
    # exactly one NaN and one zero
    all_vals = lp.decode(np.arange(256), name, dtype=np.float64)
    assert np.isnan(all_vals).sum() == 1 and (all_vals == 0).sum() == 1
