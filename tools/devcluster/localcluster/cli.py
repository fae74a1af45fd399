"""`python -m tools.devcluster.localcluster up|down|status|kubeconfig [--dir DIR]`."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from tools.devcluster.localcluster import process
from tools.devcluster.localcluster.cluster import (
    ClusterStatus,
    down,
    kubeconfig,
    restart,
    status,
    up,
)
from tools.devcluster.localcluster.process import READY_TIMEOUT, progress
from tools.devcluster.localcluster.state import Layout, LocalClusterError, default_state_dir

SUPERVISE = "_supervise"
"""Hidden command: the supervisor process of a supervised component (see `process.supervise`)."""


def print_status(st: ClusterStatus, out: IO[str]) -> None:
    if not st.recorded:
        print(f"not running (state dir {st.state_dir})", file=out)
        return
    for c in st.components:
        health = "healthy" if c.healthy else ("UNHEALTHY" if c.running else "NOT RUNNING")
        print(f"{c.name:<24} pid {c.pid:<8} {c.endpoint:<28} {health}", file=out)
    print(f"kubeconfig: {st.kubeconfig}", file=out)
    if st.object_store is not None:
        store = st.object_store
        where = Layout(st.state_dir).object_store
        print(f"bucket: s3://{store.bucket} at {store.endpoint} (credentials: {where})", file=out)


def supervised_argv(args: Sequence[str]) -> list[str] | None:
    """The command a `_supervise [--] ARGV...` invocation runs, or None for other commands."""
    if list(args[:1]) != [SUPERVISE]:
        return None
    rest = list(args[1:])
    return rest[1:] if rest[:1] == ["--"] else rest


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    supervised = supervised_argv(args_list)
    if supervised is not None:
        return process.supervise(supervised)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--dir",
        type=Path,
        default=None,
        help=f"state directory (default: {default_state_dir()})",
    )
    parser = argparse.ArgumentParser(
        prog="python -m tools.devcluster.localcluster",
        description="A throwaway Kubernetes control plane (with the KubeRay operator) on loopback.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("up", parents=[common], help="start (or reuse) the cluster")
    start.add_argument("--no-operator", action="store_true", help="do not run the KubeRay operator")
    start.add_argument(
        "--no-object-store", action="store_true", help="do not run MinIO (the local S3 bucket)"
    )
    start.add_argument(
        "--node",
        action="store_true",
        help="also run a real node (root): kubelet, containerd, scheduler, kube-proxy, CoreDNS, "
        "the image registry and the package mirror, on the pod network bridge",
    )
    start.add_argument(
        "--timeout", type=float, default=READY_TIMEOUT, help="seconds per component to get ready"
    )
    commands.add_parser("down", parents=[common], help="stop the cluster and delete its data")
    commands.add_parser(
        "status", parents=[common], help="show the processes (exit 0 healthy, 1 not, 3 not running)"
    )
    commands.add_parser("kubeconfig", parents=[common], help="print the kubeconfig path")
    again = commands.add_parser(
        "restart", parents=[common], help="stop and start components of the running cluster"
    )
    again.add_argument("names", nargs="+", metavar="COMPONENT", help="e.g. kubelet containerd")
    args = parser.parse_args(args_list)

    try:
        if args.command == "up":
            path = up(
                args.dir,
                with_operator=not args.no_operator,
                with_object_store=not args.no_object_store,
                with_node=args.node,
                timeout=args.timeout,
            )
            print(f"export KUBECONFIG={shlex.quote(str(path))}")
        elif args.command == "down":
            down(args.dir)
            progress("down")
        elif args.command == "status":
            st = status(args.dir)
            print_status(st, sys.stdout)
            return 0 if st.healthy else (1 if st.recorded else 3)
        elif args.command == "restart":
            restart(args.names, args.dir)
        elif args.command == "kubeconfig":
            print(kubeconfig(args.dir))
    except LocalClusterError as err:
        print(f"localcluster: error: {err}", file=sys.stderr)
        return 1
    return 0
