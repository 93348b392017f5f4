"""`mesoskube pods run`: the pods framework on its own (the master runs it in-process unless
--pods-framework false)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from pydantic import ValidationError

from mesoskube import settings as settings_mod
from mesoskube.kube import Kube


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pods", help="the pods framework: pods naming mesoskube's scheduler, through offers")
    psub = p.add_subparsers(dest="pods_cmd", required=True)
    run = psub.add_parser("run", help="run the pods framework in the foreground")
    run.add_argument("--kubeconfig", default=None, help="kubeconfig path (default $KUBECONFIG or in-cluster)")
    run.add_argument("--log-level", default="INFO")
    run.add_argument(
        "--teardown-after",
        type=float,
        default=None,
        help="seconds an application without live pods keeps its Framework (default 10)",
    )
    # The master's settings it shares (same flags, variables and defaults).
    settings_mod.add_arguments(run, only=("schedulerName", "namespace", "agentSelector"))
    run.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    from mesoskube.frameworks.pods.controller import DEFAULT_TEARDOWN_AFTER, PodsFramework

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        s = settings_mod.load(args)
    except ValidationError as e:
        for err in e.errors():
            name = str(err["loc"][0]) if err["loc"] else "?"
            print(
                f"error: {settings_mod.flag_name(name)} ({settings_mod.env_name(name)}): {err['msg']}",
                file=sys.stderr,
            )
        return 2
    pods = PodsFramework(
        Kube.connect(args.kubeconfig),
        scheduler_name=s.schedulerName,
        namespace=s.namespace,
        agent_selector=s.agentSelector,
        teardown_after=DEFAULT_TEARDOWN_AFTER if args.teardown_after is None else args.teardown_after,
    ).start()
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    pods.stop()
    return 0
