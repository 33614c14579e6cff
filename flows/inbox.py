"""The lab inbox: a deployment that, on a schedule, analyses every slide dropped into a folder.

Lab staff drop slides, or a folder of a case's slides, into the inbox during the day; overnight the
deployment runs the batch flow over the whole inbox, recursively. Slides already finished with the same
bytes, models and settings are skipped (``bmpipe.flows.resume``), so each run analyses only what is new or
changed, and a run interrupted by a power cut is finished by the next one. Outputs mirror the inbox's
sub-folders under the out folder, next to the ``manifest.csv`` of the latest run.
"""

from __future__ import annotations

import os
from pathlib import Path

from prefect import flow
from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Cron

from bmpipe.flows.batch import SlideOutcome, analyse_batch
from bmpipe.flows.slide import RunSettings

DEPLOYMENT = "lab-inbox"
NIGHTLY = "0 2 * * *"


@flow(name="inbox")
def process_inbox(inbox: Path, out: Path, detector: str = "unet", deidentify: bool = False, gpu_slots: int = 1,
                  models: Path | None = None, device: str | None = None) -> list[SlideOutcome]:
    """Analyse every new or changed slide under ``inbox`` into ``out`` (the deployment's entry point)."""
    settings = RunSettings(out_dir=Path(out), models_dir=models, device=device, detector=detector,
                           deidentify=deidentify, gpu_slots=gpu_slots)
    return analyse_batch([Path(inbox)], settings, recursive=True)


def inbox_deployment(inbox: Path, out: Path, cron: str = NIGHTLY, timezone: str | None = None,
                     **options: object) -> RunnerDeployment:
    """The ``lab-inbox`` deployment of ``process_inbox`` on ``cron`` (in ``timezone``, default ``$TZ`` or UTC)."""
    timezone = timezone or os.environ.get("TZ") or "UTC"
    parameters = {"inbox": str(Path(inbox).resolve()), "out": str(Path(out).resolve()), **options}
    return process_inbox.to_deployment(
        name=DEPLOYMENT,
        schedules=[Cron(cron, timezone=timezone)],
        parameters={k: str(v) if isinstance(v, Path) else v for k, v in parameters.items()},
        description="Analyse every new slide in the lab inbox; reports appear in the out folder.",
        tags=["bmpipe"],
    )
