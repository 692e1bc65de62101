"""How the .npz files here were made from the text files of shared/golden/tensor-cores
(themselves from north-numerical-computing/MATLAB-tensor-core, model_validation/, commit
b12b5a700957655375a1b0c1d0c26e76065da015, BSD 2-Clause, see LICENCE). Every number is kept:
a, b as the float32 bit patterns of the hex files, c and d as the float32 bit patterns of the
binary-string files. Run: python convert.py SRC_DIR OUT_DIR."""
import pathlib
import sys

import numpy as np


def hexes(path):
    return np.array([[int(w, 16) for w in line.split()] for line in path.read_text().split("\n")
                     if line.strip()], dtype=np.uint32)


def binaries(path):
    return np.array([int(line, 2) for line in path.read_text().split() if line.strip()],
                    dtype=np.uint32)


def main(src, out):
    src, out = pathlib.Path(src), pathlib.Path(out)
    for d in sorted(p for p in src.glob("*/*") if p.is_dir()):
        gpu, inp = d.parent.name, d.name
        arrays = {"a": hexes(d / f"a_{gpu}_{inp}.txt"), "b": hexes(d / f"b_{gpu}_{inp}.txt"),
                  "c": binaries(d / f"c_{gpu}_fp32.txt"), "d_fp32": binaries(d / f"d_{gpu}_fp32.txt")}
        if (d / f"d_{gpu}_fp16.txt").exists():
            arrays["d_fp16"] = binaries(d / f"d_{gpu}_fp16.txt")
        np.savez_compressed(out / f"{gpu}_{inp}.npz", **arrays)


if __name__ == "__main__":
    main(*sys.argv[1:3])
