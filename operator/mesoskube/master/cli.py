"""`mesoskube master run`: the Mesos master as a kopf operator."""

from __future__ import annotations

import argparse
import logging
import sys

from pydantic import ValidationError

from mesoskube import settings as settings_mod
from mesoskube.kube import Kube


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("master", help="the Mesos master (kopf operator)")
    msub = p.add_subparsers(dest="master_cmd", required=True)
    run = msub.add_parser("run", help="run the master in the foreground")
    run.add_argument("--kubeconfig", default=None, help="kubeconfig path (default $KUBECONFIG or in-cluster)")
    run.add_argument(
        "--kube-api-qps", type=float, default=100.0, help="client QPS to the API server (0 = no limit)"
    )
    run.add_argument("--kube-api-burst", type=int, default=200, help="client burst")
    run.add_argument(
        "--kube-api-status-qps",
        type=float,
        default=None,
        help="QPS of the second client, for what the master tells frameworks: Offers, status "
        "patches and Events (default: --kube-api-qps; its own rate limiter, as kube-scheduler's "
        "Events client)",
    )
    run.add_argument(
        "--kube-api-status-burst", type=int, default=None, help="its burst (default: --kube-api-burst)"
    )
    run.add_argument(
        "--status-writes-off-step",
        action="store_true",
        help="Task status patches on their own pool, off the engine's step (measured slower on a "
        "CPU-bound API server; see README)",
    )
    run.add_argument("--log-level", default="INFO")
    settings_mod.add_arguments(run)
    run.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # kopf logs every handler call at INFO; at thousands of watch events a second that is noise.
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    # urllib3 logs each of its own retries; our code says what failed, once.
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
    try:
        settings = settings_mod.load(args)
    except ValidationError as e:
        for err in e.errors():
            name = str(err["loc"][0]) if err["loc"] else "?"
            print(
                f"error: setting {name} ({settings_mod.flag_name(name)}, {settings_mod.env_name(name)}): "
                f"{err['msg']}",
                file=sys.stderr,
            )
        return 2
    from mesoskube.master import trace
    from mesoskube.master.runner import Master

    trace.setup()  # per-task stage timestamps when MESOSKUBE_TRACE names a file

    status_qps = args.kube_api_qps if args.kube_api_status_qps is None else args.kube_api_status_qps
    status_burst = args.kube_api_burst if args.kube_api_status_burst is None else args.kube_api_status_burst
    return Master(
        Kube.connect(args.kubeconfig, qps=args.kube_api_qps, burst=args.kube_api_burst),
        settings,
        status_kube=Kube.connect(args.kubeconfig, qps=status_qps, burst=status_burst),
        status_off_step=args.status_writes_off_step,
    ).run()
