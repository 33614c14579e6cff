"""GPU sharing: at most N slides in the model stages at once, while other slides read, tile and report.

The limit is a Prefect global concurrency limit (``bmpipe-gpu``), so it holds across every process that
talks to the same Prefect API: the threads of one ``bmpipe run`` (its temporary local server), the
workers of a Dask cluster or several ``bmpipe serve`` workers sharing a Prefect server. Only detection
and classification take a slot; opening a slide, finding its smear and writing its report do not.

A slot is held under a lease the holder renews; a process killed while holding one stops renewing it, and
a Prefect server frees the slot when the lease runs out (``LEASE_S``; its lease storage must outlive a
restart of the server, see ``docker/compose.yaml``). A temporary local server frees nothing: it keeps the
slot counts in ``PREFECT_HOME``'s database but the leases in its own memory, and it does not run Prefect's
lease repossessor, so ``free_orphaned_slots`` does it when a local run starts.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectNotFound
from prefect.settings import PREFECT_API_URL

log = logging.getLogger(__name__)

GPU_LIMIT = "bmpipe-gpu"
#: Seconds a killed holder's slot stays taken on a Prefect server (Prefect's default, 300, is renewed
#: at three quarters of it; a minute costs one renewal call each 45 s of a slide's model stages).
LEASE_S = 60


def set_gpu_slots(slots: int) -> None:
    """Create the ``bmpipe-gpu`` limit with ``slots`` slots, or resize it."""
    if slots < 1:
        raise ValueError(f"--gpu-slots must be at least 1, not {slots}")
    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(GPU_LIMIT, slots)


def free_orphaned_slots() -> int:
    """On a temporary local Prefect server (no ``PREFECT_API_URL``), mark every ``bmpipe-gpu`` slot free and
    return how many were taken; with a configured server, leave them to its lease repossessor (0).

    Called when ``bmpipe run`` or ``bmpipe serve`` starts, before any slide takes a slot: the slots then
    held are those of runs killed while in the model stages, which would otherwise make every later run wait
    forever. Another local run started by hand on the same ``PREFECT_HOME`` at that moment would lose its
    slot's count: one slide more on the GPU at once for a while, never a wait.
    """
    if PREFECT_API_URL.value():
        return 0
    with get_client(sync_client=True) as client:
        try:
            taken = client.read_global_concurrency_limit_by_name(GPU_LIMIT).active_slots
        except ObjectNotFound:  # no run has set the limit up yet
            return 0
        if taken:
            client.update_global_concurrency_limit(GPU_LIMIT, GlobalConcurrencyLimitUpdate(active_slots=0))
            log.warning("freed %d GPU slot(s) left taken by an interrupted run", taken)
    return taken


@contextmanager
def gpu_slot() -> Iterator[None]:
    """Hold one ``bmpipe-gpu`` slot while inside, waiting for one to free if all are taken."""
    with concurrency(GPU_LIMIT, occupy=1, strict=True, lease_duration=LEASE_S):
        yield
