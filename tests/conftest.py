"""Test configuration: one thread (2-core machines run other work beside the tests), seeded randomness."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np
import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)
    yield


@pytest.fixture(autouse=True, scope="session")
def _kernels():
    # a first run on a machine compiles the kernels: all at once, one compiler per core, not one by one as the tests
    # first use them (the kernels' own tests build variants of their own)
    from neuradiff.physics.fused import build_kernels

    build_kernels()
    yield
