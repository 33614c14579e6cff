"""The allocator keeps freed memory, so a batch-sized buffer allocated again is not page-faulted in afresh."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bmpipe.nn.heap import keep_freed_memory

#: Above glibc's largest default mmap threshold (32 MiB), as a U-Net's activations are. With glibc's default
#: it is mapped afresh each time: 129-640 faults here (huge pages or not), up to 65,536 with 4 KiB pages.
SIZE = 256 << 20


def faults_to_fill(nbytes: int) -> int:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    buffer = np.ones(nbytes, np.uint8)
    del buffer
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def test_a_freed_batch_buffer_is_reused_without_page_faults():
    if not keep_freed_memory():
        pytest.skip("the C library has no mallopt (not glibc)")
    faults_to_fill(SIZE)
    assert faults_to_fill(SIZE) < 10


def test_loading_a_model_sets_the_allocator_in_any_process():
    """``bmpipe classify`` and ``detect`` load their model without ``load_models``: the setting must come with
    the weights. Checked in a fresh process, which no other test has set."""
    if not keep_freed_memory():
        pytest.skip("the C library has no mallopt (not glibc)")
    script = (
        "import resource, numpy as np\n"
        "from bmpipe.nn.cell_classifier import CellClassifier\n"
        "def faults_to_fill(n):\n"
        "    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "    np.ones(n, np.uint8)\n"
        "    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before\n"
        f"default = faults_to_fill({SIZE}), faults_to_fill({SIZE})\n"
        "CellClassifier.load()\n"
        f"faults_to_fill({SIZE})\n"
        f"print(default[1], faults_to_fill({SIZE}))\n"
    )
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True, check=True)
    default, after_load = map(int, done.stdout.split())
    assert default >= 100 and after_load < 10
