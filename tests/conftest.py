"""Test set-up: interpreter flags before any kernel import, hypothesis profile, shared helpers.

``LOWPREC_TEST_DEVICE=cuda`` (``make test-gpu``, on a machine with an NVIDIA GPU) runs the
Triton and Pallas kernel tests natively on the GPU instead of in their interpreters: the same
tests, the same oracles (the core on the CPU), tensors and arrays on the GPU."""
import os

GPU = os.environ.get("LOWPREC_TEST_DEVICE", "cpu") == "cuda"
os.environ.setdefault("TRITON_INTERPRET", "0" if GPU else "1")
os.environ.setdefault("JAX_PLATFORMS", "cuda,cpu" if GPU else "cpu")
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_experimental_ynn_fusion_type=-LIBRARY_FUSION_TYPE_REDUCE "
                      "--xla_force_host_platform_device_count=4")   # 4 CPU devices: mesh tests

import numpy as np  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

settings.register_profile("ci", deadline=None, max_examples=150,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci")


def bits(a):
    """Unsigned-integer view of a float array (the only way tests compare floats)."""
    a = np.asarray(a)
    return a.view({2: np.uint16, 4: np.uint32, 8: np.uint64, 1: np.uint8}[a.dtype.itemsize])
