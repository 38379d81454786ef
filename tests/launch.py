"""Two CPU processes under torchrun (gloo), as `accelerate launch` runs a script or stage on two GPUs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def torchrun_two_cpus(*args: str, env: dict[str, str] | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc_per_node 2 ARGS` from the repository root; the test fails with the tail
    of stderr unless it exits 0. ACCELERATE_USE_CPU makes accelerate form the process group on CPUs (without
    it each process trains alone); --standalone lets torchrun's own rendezvous store take a free port, with no
    window between picking a port here and binding it there for another process to take it."""
    torchrun = Path(sys.executable).with_name("torchrun")
    full_env = {**os.environ, "PYTHONPATH": str(REPO), "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1",
                **(env or {})}
    proc = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2", *args],
                          cwd=REPO, env=full_env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc
