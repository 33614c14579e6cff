"""GPU sharing: at most N slides in the model stages at once, while other slides read, tile and report.

The limit is a Prefect global concurrency limit (``bmpipe-gpu``), so it holds across every process that
talks to the same Prefect API: the threads of one ``bmpipe run`` (its temporary local server), the
workers of a Dask cluster or several ``bmpipe serve`` workers sharing a Prefect server. Only detection
and classification take a slot; opening a slide, finding its smear and writing its report do not.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from prefect.client.orchestration import get_client
from prefect.concurrency.sync import concurrency

GPU_LIMIT = "bmpipe-gpu"


def set_gpu_slots(slots: int) -> None:
    """Create the ``bmpipe-gpu`` limit with ``slots`` slots, or resize it."""
    if slots < 1:
        raise ValueError(f"--gpu-slots must be at least 1, not {slots}")
    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(GPU_LIMIT, slots)


@contextmanager
def gpu_slot() -> Iterator[None]:
    """Hold one ``bmpipe-gpu`` slot while inside, waiting for one to free if all are taken."""
    with concurrency(GPU_LIMIT, occupy=1, strict=True):
        yield
