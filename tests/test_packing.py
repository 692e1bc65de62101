"""pack/unpack against a bit-string oracle written from the documented layouts: FP4 element 2j
in the low nibble; FP6 element 4j+i in bits 6i..6i+5 of a little-endian 24-bit group."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import lowprec as lp


def _oracle_pack(codes, bits):
    """Concatenate each code's bits, least significant first, then read bytes LSB first."""
    per = {4: 2, 6: 4, 8: 1}[bits]
    codes = list(codes) + [0] * (-len(codes) % per)
    stream = []
    for c in codes:
        stream += [(c >> b) & 1 for b in range(bits)]
    return [sum(stream[8 * j + b] << b for b in range(8)) for j in range(len(stream) // 8)]


def test_fp4_nibble_order_by_hand():
    assert lp.pack(np.array([0x1, 0x2, 0xF, 0x0], np.uint8), "float4_e2m1fn").tolist() == \
        [0x21, 0x0F]
    # three FP6 codes 0b000001, 0b000010, 0b111111 (+ pad 0): word 0x03F081 -> bytes 81 F0 03
    assert lp.pack(np.array([1, 2, 63], np.uint8), 6).tolist() == [0x81, 0xF0, 0x03]


@given(st.sampled_from([4, 6, 8]), st.data())
@settings(max_examples=200, deadline=None)
def test_pack_matches_the_bit_stream_and_round_trips(bits, data):
    n = data.draw(st.integers(1, 40))
    codes = data.draw(st.lists(st.integers(0, (1 << bits) - 1), min_size=n, max_size=n))
    c = np.array(codes, np.uint8)
    packed = lp.pack(c, bits)
    assert packed.dtype == np.uint8
    assert packed.tolist() == _oracle_pack(codes, bits)
    assert lp.unpack(packed, bits, n).tolist() == codes


def test_pack_works_on_batches_and_with_block_tensors():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 5, 64)).astype(np.float32)
    bt = lp.quantize(x, "nvfp4")
    flat = bt.codes.reshape(3, 5, 64)
    packed = lp.pack(flat, bt.fmt.elem)
    assert packed.shape == (3, 5, 32)
    for i in range(3):
        for j in range(5):
            assert packed[i, j].tolist() == _oracle_pack(flat[i, j].tolist(), 4)
    assert np.array_equal(lp.unpack(packed, "float4_e2m1fn"), flat)
    six = lp.quantize(x, "mxfp6_e3m2").codes.reshape(3, 5, 64)
    assert np.array_equal(lp.unpack(lp.pack(six, "float6_e3m2fn"), 6, 64), six)


def test_pack_bad_input():
    with pytest.raises(ValueError, match="0 .. 15"):
        lp.pack(np.array([16], np.uint8), 4)
    with pytest.raises(TypeError, match="integer array"):
        lp.pack(np.array([1.0]), 4)
    with pytest.raises(ValueError, match="4-, 6- and 8-bit"):
        lp.pack(np.array([1], np.uint8), "float16")
    with pytest.raises(ValueError, match="groups of 3 bytes"):
        lp.unpack(np.zeros(4, np.uint8), 6)
    with pytest.raises(ValueError, match="n=9"):
        lp.unpack(np.zeros(4, np.uint8), 4, 9)
    with pytest.raises(TypeError, match="uint8"):
        lp.unpack(np.zeros(4, np.int32), 4)
