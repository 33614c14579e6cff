"""``bmpipe serve``: the lab inbox deployment, served on a schedule until stopped.

``bmpipe serve --inbox /lab/inbox --out /lab/reports --cron "0 2 * * *"`` registers the ``inbox/lab-inbox``
deployment with the Prefect API (a server named by ``PREFECT_API_URL``, else a local one) and runs each
scheduled run in this process. ``--once`` analyses the inbox now, without a schedule, and exits.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from bmpipe.cli.options import add_out
from bmpipe.cli.run import add_analysis_options, show_progress

log = logging.getLogger("bmpipe")


def _options(args: argparse.Namespace) -> dict[str, object]:
    options: dict[str, object] = {"detector": args.detector, "deidentify": args.deidentify,
                                  "gpu_slots": args.gpu_slots}
    if args.models:
        options["models"] = args.models
    if args.device:
        options["device"] = args.device
    return options


def _serve(args: argparse.Namespace) -> int:
    # bmpipe's own log lines (slides opened, cells counted, failures) go to the Prefect UI with the flow's.
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "bmpipe")
    os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")  # lines logged between runs
    from bmpipe.flows.gpu import free_orphaned_slots
    from bmpipe.flows.inbox import inbox_deployment, process_inbox

    if not args.inbox.is_dir():
        from bmpipe.errors import InputError

        raise InputError(args.inbox, "the inbox is not a folder")
    free_orphaned_slots()
    if args.once:
        with show_progress():
            outcomes = process_inbox(args.inbox, args.out, **_options(args))
        return 1 if any(o.status == "failed" for o in outcomes) else 0
    from prefect import serve

    deployment = inbox_deployment(args.inbox, args.out, args.cron, args.timezone, **_options(args))
    log.info("serving %s: %s every '%s' (%s) into %s; stop with Ctrl-C", deployment.name, args.inbox, args.cron,
             deployment.schedules[0].schedule.timezone, args.out)
    serve(deployment)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="analyse every new slide of an inbox folder on a schedule (Prefect deployment)")
    p.add_argument("--inbox", type=Path, required=True, help="folder lab staff drop slides or case folders into")
    add_out(p, "output folder: reports mirror the inbox's folders")
    p.add_argument("--cron", default="0 2 * * *", help='when to run, as cron (default "0 2 * * *": 02:00 daily)')
    p.add_argument("--timezone", default=None, help="IANA time zone of --cron (default: $TZ, else UTC)")
    p.add_argument("--once", action="store_true", help="analyse the inbox now and exit, without a schedule")
    add_analysis_options(p)
    p.set_defaults(func=_serve)
