"""What every stage sets before its work: subnormal floats flushed on every thread."""

import subprocess
import sys

import pytest

# Products of 1e-21 and 1e-21 summed 1024 times: about 1e-39, a float32 subnormal.
SUBNORMAL_MATMUL = """
import torch
x = torch.full((1024, 1024), 1e-21)
print(int(((x @ x) != 0).sum()))
"""


@pytest.mark.parametrize(("setup", "flushed"), [
    ("from ssiuu.model.runtime import configure; configure(2)", True),
    ("import torch; torch.set_num_threads(2)", False),
])
def test_configure_flushes_subnormals_on_every_thread_of_a_matmul(setup, flushed):
    out = subprocess.run([sys.executable, "-c", setup + SUBNORMAL_MATMUL], check=True,
                         capture_output=True, text=True).stdout
    assert (int(out) == 0) == flushed
