"""The FP4 training example (a small GPT in Flax NNX, layers under nnx.scan) runs: a smoke
version, 3 steps, one layer, float32 and bf16 (the FP4/FP8 recipes' products are checked
in test_jax_dot, the Flax entry points in test_jax_flax); the recipe changes the numbers:
quantized training is not the float32 one."""
import importlib.util
import pathlib

import numpy as np


def test_fp4_training_smoke():
    path = pathlib.Path(__file__).parents[1] / "examples" / "fp4_training_jax.py"
    spec = importlib.util.spec_from_file_location("fp4_training_jax", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    res = mod.main(["--smoke", "--layers", "1", "--recipes", "none,bf16"])
    assert set(res) == {"none", "bf16"}
    for losses, test, _, _ in res.values():
        assert losses.shape == (3,) and np.all(np.isfinite(losses)) and np.isfinite(test)
    assert res["none"][0][0] != res["bf16"][0][0]        # the first forward pass differs
