"""The FP4 training example (a small GPT in Flax NNX, layers under nnx.scan) runs: a smoke
version, 3 steps, one layer, the baseline and mxfp4 (nvfp4's three products are checked in
test_jax_dot); its recipe changes the numbers: quantized training is not the float32 one."""
import importlib.util
import pathlib

import numpy as np


def test_fp4_training_smoke():
    path = pathlib.Path(__file__).parents[1] / "examples" / "fp4_training_jax.py"
    spec = importlib.util.spec_from_file_location("fp4_training_jax", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    res = mod.main(["--smoke", "--layers", "1", "--recipes", "none,mxfp4"])
    assert set(res) == {"none", "mxfp4"}
    for losses, test, _, _ in res.values():
        assert losses.shape == (3,) and np.all(np.isfinite(losses)) and np.isfinite(test)
    assert res["none"][0][0] != res["mxfp4"][0][0]        # the first forward pass differs
