"""The allocator keeps freed memory, so a batch-sized buffer allocated again is not page-faulted in afresh."""

from __future__ import annotations

import resource

import numpy as np
import pytest

from bmpipe.nn.heap import keep_freed_memory


def faults_to_fill(nbytes: int) -> int:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    buffer = np.ones(nbytes, np.uint8)
    del buffer
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def test_a_freed_batch_buffer_is_reused_without_page_faults():
    if not keep_freed_memory():
        pytest.skip("the C library has no mallopt (not glibc)")
    size = 64 << 20  # above glibc's largest default mmap threshold (32 MiB), as a U-Net's activations are
    faults_to_fill(size)
    # glibc's default maps it afresh each time: 544 faults here (huge pages), up to 16,384 (4 KiB pages)
    assert faults_to_fill(size) < 100
