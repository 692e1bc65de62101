"""Check on a CUDA GPU that the seeded stream of ``lowprec.rounding`` (element i: word i % 4 of
Philox4x32-10 at counter i // 4) is what the GPU's own generators give: Triton's
``tl.randint4x(seed, i // 4)`` and cuRAND's ``curand()`` after ``curand_init(seed, 0, i)``
(Philox4_32_10 state). Run: ``python gpu/streams.py``."""
from __future__ import annotations

import glob
import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
import lowprec as lp  # noqa: E402

SRC = r"""
#include <curand_kernel.h>
extern "C" __global__ void words(unsigned long long seed, unsigned int* out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        curandStatePhilox4_32_10_t st;
        curand_init(seed, 0, i, &st);
        out[i] = curand(&st);
    }
}
"""


def curand_words(seed, n):
    import cupy as cp  # noqa: PLC0415
    inc = sorted(set(glob.glob("/usr/local/cuda*/include") + glob.glob(
        str(pathlib.Path(cp.__file__).parents[1] / "nvidia" / "*" / "include"))))
    k = cp.RawKernel(SRC, "words", options=tuple(f"-I{d}" for d in inc))
    out = cp.empty(n, dtype=cp.uint32)
    k(((n + 255) // 256,), (256,), (cp.uint64(seed), out, cp.int32(n)))
    return cp.asnumpy(out)


def main(n=1 << 20):
    for seed in (0, 7, 2**40 + 3, 2**64 - 1):
        want = lp.random_bits(seed, (n,))
        try:
            got = curand_words(seed, n)
            print(f"seed {seed}: cuRAND curand() after curand_init(seed, 0, i): "
                  f"{int((got == want).sum())}/{n} words equal")
        except Exception as e:  # noqa: BLE001 -- report, keep going
            print(f"seed {seed}: cuRAND check failed to run: {type(e).__name__}: {str(e)[:300]}")


if __name__ == "__main__":
    main()
