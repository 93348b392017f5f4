"""`mesoskube cluster up|down|status|kubeconfig`."""

from __future__ import annotations

import argparse
import sys
import time

from mesoskube.cluster.binaries import MissingBinary
from mesoskube.cluster.local import ClusterError, LocalCluster
from mesoskube.cluster.nodes import add_nodes, ready_fake_nodes, wait_nodes_ready
from mesoskube.cluster.nodeshapes import ShapeError, parse_shape
from mesoskube.kube import Kube


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "cluster", help="a real local control plane (etcd, kube-apiserver, controller-manager, kwok)"
    )
    p.add_argument(
        "--name", default="default", help="cluster name (state under ~/.cache/mesoskube/clusters/NAME)"
    )
    csub = p.add_subparsers(dest="cluster_cmd", required=True)
    up = csub.add_parser("up", help="start it in the background and create fake nodes")
    up.add_argument("--nodes", type=int, default=3, help="number of fake (kwok) nodes (default 3)")
    up.add_argument(
        "--node-shape",
        action="append",
        default=[],
        metavar="SHAPE",
        help="'cpu=8,memory=32Gi,ephemeral-storage=100Gi,gpu=0,label:zone=a'; repeat to mix "
        "shapes (dealt round-robin)",
    )
    up.add_argument(
        "--scheduler", action="store_true", help="also run kube-scheduler (the one-level baseline)"
    )
    up.set_defaults(func=cmd_up)
    csub.add_parser("down", help="stop everything and delete its data").set_defaults(func=cmd_down)
    csub.add_parser("status", help="components, nodes, crashes").set_defaults(func=cmd_status)
    csub.add_parser("kubeconfig", help="print the kubeconfig path (last line)").set_defaults(
        func=cmd_kubeconfig
    )


def cmd_up(args: argparse.Namespace) -> int:
    started = time.monotonic()
    cluster = LocalCluster(args.name)
    try:
        shapes = [parse_shape(s) for s in args.node_shape]
        fresh = cluster.up(with_scheduler=args.scheduler)
    except (ShapeError, MissingBinary, ClusterError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if not fresh:
        print(f"cluster {args.name!r} is already running (no change); kubeconfig: {cluster.kubeconfig}")
        return 0
    kube = Kube.connect(str(cluster.kubeconfig))
    add_nodes(kube, args.nodes, shapes)
    try:
        wait_nodes_ready(kube, args.nodes)
    except TimeoutError as e:
        print(
            f"error: {e}\n" + "\n".join(f"{c}: {log}" for c, log in cluster.crashed().items()),
            file=sys.stderr,
        )
        return 1
    print(f"cluster {args.name!r} up with {args.nodes} Ready fake nodes in {time.monotonic() - started:.1f}s")
    print(f"kubeconfig: {cluster.kubeconfig}")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    LocalCluster(args.name).down()
    print(f"cluster {args.name!r} stopped and removed")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    cluster = LocalCluster(args.name)
    status = cluster.component_status()
    for component, state in status.items():
        print(f"{component:<24} {state}")
    for component, log in cluster.crashed().items():
        print(f"\n{component} exited; last lines of its log:\n{log}")
    if not cluster.is_running():
        print(f"cluster {args.name!r} is not running")
        return 1
    ready, total = ready_fake_nodes(Kube.connect(str(cluster.kubeconfig)))
    print(f"fake nodes: {ready}/{total} Ready")
    print(f"kubeconfig: {cluster.kubeconfig}")
    return 0


def cmd_kubeconfig(args: argparse.Namespace) -> int:
    cluster = LocalCluster(args.name)
    if not cluster.kubeconfig.exists():
        print(f"cluster {args.name!r} is not up: run `mesoskube cluster up`", file=sys.stderr)
        return 1
    print(cluster.kubeconfig)
    return 0
