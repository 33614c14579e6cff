"""``bmpipe serve``: the nightly deployment's schedule (checked without waiting for 02:00), the inbox flow
run once on a new case folder, and the commands and declarations the worker images run."""

from __future__ import annotations

import asyncio
import importlib
import json
import shlex
import shutil
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
import yaml
from batch_slides import assert_same_results, make_inbox, reference_run, slide_files

from bmpipe.cli import build_parser
from bmpipe.flows.inbox import DEPLOYMENT, inbox_deployment, process_inbox

ROOT = Path(__file__).resolve().parents[1]


def next_runs(schedule, n: int, after: datetime) -> list[datetime]:
    from prefect.server.schemas.schedules import CronSchedule

    server_side = CronSchedule(cron=schedule.cron, timezone=schedule.timezone, day_or=schedule.day_or)
    return asyncio.run(server_side.get_dates(n=n, start=after))


def test_the_served_deployment_runs_nightly_at_2_in_the_lab_time_zone(tmp_path):
    deployment = inbox_deployment(tmp_path / "inbox", tmp_path / "out", timezone="Europe/Paris")
    assert deployment.name == DEPLOYMENT and deployment.parameters == {
        "inbox": str(tmp_path / "inbox"), "out": str(tmp_path / "out")}
    (schedule,) = [s.schedule for s in deployment.schedules]
    runs = next_runs(schedule, 3, datetime(2026, 11, 22, 15, 0, tzinfo=timezone.utc))
    assert [r.astimezone(ZoneInfo("Europe/Paris")).replace(tzinfo=None) for r in runs] == [
        datetime(2026, 11, d, 2, 0) for d in (23, 24, 25)]
    assert runs[0].astimezone(timezone.utc).hour == 1  # 02:00 in Paris is 01:00 UTC in winter
    assert all(r.tzinfo is not None for r in runs)


def test_any_cron_is_accepted_and_a_bad_one_refused(tmp_path):
    schedule = inbox_deployment(tmp_path, tmp_path, cron="30 22 * * 1-5", timezone="UTC").schedules[0].schedule
    runs = next_runs(schedule, 2, datetime(2026, 11, 20, 23, 0, tzinfo=timezone.utc))  # a Friday night
    assert [(r.weekday(), r.hour, r.minute) for r in runs] == [(0, 22, 30), (1, 22, 30)]
    with pytest.raises(ValueError):
        inbox_deployment(tmp_path, tmp_path, cron="at two", timezone="UTC")


def test_prefect_yaml_declares_the_same_deployment_for_a_work_pool():
    from prefect.cli.deploy._models import PrefectYamlModel

    config = PrefectYamlModel.model_validate(yaml.safe_load((ROOT / "prefect.yaml").read_text()))
    (declared,) = config.deployments
    served = inbox_deployment(Path("/data/inbox"), Path("/data/out"), timezone="UTC")
    assert declared.name == served.name and declared.work_pool.name == "bmpipe"
    module, function = declared.entrypoint.split(":")
    assert (ROOT / module).is_file() and function == process_inbox.fn.__name__
    (schedule,) = declared.schedules
    assert (schedule.cron, schedule.timezone) == (served.schedules[0].schedule.cron, "UTC")
    assert set(declared.parameters) <= set(process_inbox.parameters.properties)


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.cuda"])
def test_the_worker_images_run_a_valid_bmpipe_command_as_a_non_root_user(dockerfile):
    text = (ROOT / "docker" / dockerfile).read_text()
    lines = [line.split(None, 1) for line in text.splitlines() if line and not line.startswith("#")]
    instructions = {k: v for k, v in lines if k in {"USER", "ENTRYPOINT", "CMD"}}
    assert instructions["USER"].strip() not in {"root", "0"}
    assert json.loads(instructions["ENTRYPOINT"]) == ["bmpipe"]
    args = build_parser().parse_args(json.loads(instructions["CMD"]))
    assert args.command == "serve" and args.inbox == Path("/data/inbox") and args.cron == "0 2 * * *"
    # installed as tests/test_wheel.py proves works: a built wheel (the models inside), not the source tree
    assert "pip wheel" in text and "/tmp/wheels/bmpipe-*.whl" in text


def test_the_compose_worker_command_parses_and_mounts_inbox_and_out():
    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())
    worker = compose["services"]["worker"]
    args = build_parser().parse_args(worker["command"])
    mounts = {v.split("}:")[-1].split(":")[0] for v in worker["volumes"]}
    assert {str(args.inbox), str(args.out)} <= mounts
    assert worker["environment"]["PREFECT_API_URL"].startswith("http://prefect-server:")


def test_serve_help_lists_the_schedule(capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(shlex.split("serve --help"))
    assert exit_.value.code == 0 and "--cron" in capsys.readouterr().out


def test_serve_shares_the_run_options_and_their_checks(capsys):
    args = build_parser().parse_args(shlex.split(
        "serve --inbox in --out out --models m --device cpu --detector yolo --deidentify --gpu-slots 2"))
    assert (args.models, args.device, args.detector, args.deidentify, args.gpu_slots) == (
        Path("m"), "cpu", "yolo", True, 2)
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(shlex.split("serve --inbox in --out out --gpu-slots 0"))
    assert exit_.value.code == 2 and "must be at least 1" in capsys.readouterr().err


@pytest.mark.slow
def test_one_inbox_run_analyses_a_new_case_folder_and_skips_what_is_done(tmp_path_factory, tmp_path):
    _, reference, _ = reference_run(tmp_path_factory)
    slides = slide_files(tmp_path_factory)
    inbox = make_inbox(tmp_path / "inbox", {"marrow-b": slides["marrow-b"]}, broken=False)
    make_inbox(inbox / "case-7", {"marrow-a": slides["marrow-a"]}, broken=False)  # dropped in during the day
    out = tmp_path / "out"
    shutil.copytree(reference / "marrow-b", out / "marrow-b")  # analysed last night

    outcomes = process_inbox(inbox, out)
    assert {(Path(o.slide).name, o.status) for o in outcomes} == {("marrow-b.tiff", "skipped"),
                                                                   ("marrow-a.tiff", "ok")}
    assert_same_results(out / "case-7" / "marrow-a", reference / "marrow-a")
    manifest = pd.read_csv(out / "manifest.csv")
    assert set(manifest.status) == {"ok", "skipped"}

    assert {o.status for o in process_inbox(inbox, out)} == {"skipped"}  # the next night: nothing new


def test_the_compose_server_keeps_gpu_slot_leases_across_restarts():
    """In memory (Prefect's default) a restarted server forgets who holds the GPU slots and never frees them."""
    from prefect.server.concurrency.lease_storage import ConcurrencyLeaseStorageModule

    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())
    module = compose["services"]["prefect-server"]["environment"]["PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE"]
    assert isinstance(importlib.import_module(module), ConcurrencyLeaseStorageModule) and "memory" not in module
