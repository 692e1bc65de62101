"""A deliberately broken GEMM "kernel" for README's "Checking a kernel" section: right
(lowprec's h100-fp16 model) everywhere except one 64 x 64 output tile, rows 128-191 and
columns 64-127, that skips the last K-step of 16 products, the kind of bug a tile loop's
bounds give. Usage: python examples/broken_gemm.py GOLDEN.npz OUT.npy"""
import sys

import numpy as np

import lowprec as lp

g = np.load(sys.argv[1])
a, b, c = g["a"], g["b"], g["c"]
out = lp.matmul(a, b, "h100-fp16", c)
rows, cols, k = slice(128, 192), slice(64, 128), a.shape[1] - 16
out[rows, cols] = lp.matmul(a[rows, :k], b[:k, cols], "h100-fp16", c[rows, cols])
np.save(sys.argv[2], out)
