"""The fuzz test (tests/fuzz_rnn.py: random valid and invalid calls of the op, rnn_stack, the
one-layer functions and the modules; each valid one matches fastrnn.reference or torch.nn, each
invalid one raises a Python exception), run in a subprocess so that a crash fails this test.
CI runs 300 examples from seed 0 (about 10 s); FASTRNN_FUZZ_EXAMPLES and FASTRNN_FUZZ_SEED
(a number, or "random") change both, e.g. for a long local run."""

import os
import subprocess
import sys

import hypothesis  # noqa: F401  (the driver's; Makefile's BUILD_DEPS installs it)

DRIVER = os.path.join(os.path.dirname(__file__), "fuzz_rnn.py")


def test_fuzz():
    env = {"FASTRNN_FUZZ_EXAMPLES": "300", "FASTRNN_FUZZ_SEED": "0", **os.environ}
    run = subprocess.run([sys.executable, DRIVER], env=env, capture_output=True, text=True,
                         timeout=int(env.get("FASTRNN_FUZZ_TIMEOUT", "600")))
    assert run.returncode == 0, (f"exit {run.returncode}\n{run.stdout[-6000:]}\n"
                                 f"{run.stderr[-6000:]}")
    assert "fuzz: passed" in run.stdout
