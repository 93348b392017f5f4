"""`mesoskube cluster up|down|status|kubeconfig`."""

from __future__ import annotations

import argparse
import sys
import time

from mesoskube.cluster.binaries import MissingBinary
from mesoskube.cluster.hostchanges import HostBusy
from mesoskube.cluster.kubelets import RealNodes
from mesoskube.cluster.local import ClusterError, LocalCluster
from mesoskube.cluster.nodes import add_nodes, ready_fake_nodes, wait_nodes_ready
from mesoskube.cluster.nodeshapes import ShapeError, parse_shape
from mesoskube.cluster.realnodes import REAL_LABEL
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
    up.add_argument(
        "--real-nodes",
        type=int,
        default=0,
        metavar="N",
        help="also start N real kubelet nodes (containerd + runc; needs root; changes the host, "
        "and `down` undoes it)",
    )
    up.set_defaults(func=cmd_up)
    csub.add_parser("down", help="stop everything and delete its data").set_defaults(func=cmd_down)
    inst = csub.add_parser(
        "install-master", help="helm install the chart with the locally built image, on a real node"
    )
    inst.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra chart value")
    inst.set_defaults(func=cmd_install_master)
    csub.add_parser("status", help="components, nodes, crashes").set_defaults(func=cmd_status)
    csub.add_parser("kubeconfig", help="print the kubeconfig path (last line)").set_defaults(
        func=cmd_kubeconfig
    )


def cmd_up(args: argparse.Namespace) -> int:
    started = time.monotonic()
    cluster = LocalCluster(args.name)
    try:
        shapes = [parse_shape(s) for s in args.node_shape]
        fresh = cluster.up(with_scheduler=args.scheduler, real_nodes=args.real_nodes)
    except (ShapeError, MissingBinary, ClusterError, HostBusy) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if not fresh:
        print(f"cluster {args.name!r} is already running (no change); kubeconfig: {cluster.kubeconfig}")
        return 0
    kube = Kube.connect(str(cluster.kubeconfig))
    add_nodes(kube, args.nodes, shapes)
    try:
        wait_nodes_ready(kube, args.nodes)
        if args.real_nodes:
            wait_nodes_ready(kube, args.real_nodes, timeout=90, selector=f"{REAL_LABEL}=true")
    except TimeoutError as e:
        print(
            f"error: {e}\n" + "\n".join(f"{c}: {log}" for c, log in cluster.crashed().items()),
            file=sys.stderr,
        )
        return 1
    real = f" and {args.real_nodes} Ready real nodes" if args.real_nodes else ""
    print(
        f"cluster {args.name!r} up with {args.nodes} Ready fake nodes{real} "
        f"in {time.monotonic() - started:.1f}s"
    )
    print(f"kubeconfig: {cluster.kubeconfig}")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    problems = LocalCluster(args.name).down()
    for p in problems:
        print(f"warning: not undone: {p}", file=sys.stderr)
    print(f"cluster {args.name!r} stopped and removed" + ("" if not problems else " (see warnings)"))
    return 1 if problems else 0


def cmd_install_master(args: argparse.Namespace) -> int:
    from mesoskube.cluster.install import NAMESPACE, install_master

    values = dict(v.split("=", 1) for v in args.set)
    try:
        pod = install_master(LocalCluster(args.name), values)
    except (ClusterError, MissingBinary) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"master running as pod {NAMESPACE}/{pod}")
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
    kube = Kube.connect(str(cluster.kubeconfig))
    ready, total = ready_fake_nodes(kube)
    print(f"fake nodes: {ready}/{total} Ready")
    state = cluster.state()
    if state.get("real"):
        ready, total = ready_fake_nodes(kube, f"{REAL_LABEL}=true")
        print(f"real nodes: {ready}/{total} Ready")
        for node, health in RealNodes(cluster).health(state).items():
            print(f"  {node:<22} {health}")
    print(f"kubeconfig: {cluster.kubeconfig}")
    return 0


def cmd_kubeconfig(args: argparse.Namespace) -> int:
    cluster = LocalCluster(args.name)
    if not cluster.kubeconfig.exists():
        print(f"cluster {args.name!r} is not up: run `mesoskube cluster up`", file=sys.stderr)
        return 1
    print(cluster.kubeconfig)
    return 0
