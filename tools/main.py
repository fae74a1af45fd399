"""The main job: `pulumi up --stack local` with the real engine, offline.

    python -m tools.main [up|preview|destroy|outputs|down] [--stack local] [--state DIR]

With no $KUBECONFIG it first starts the project's local control plane (etcd, kube-apiserver,
kube-controller-manager and the KubeRay operator on loopback; `down` stops it). State lives in
a file backend under the user cache directory.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from pulumi import automation as auto

from tools import engine, localcluster
from tools.build import BuildError, cache_root


def _kubeconfig(start_cluster: bool) -> Path | None:
    given = os.environ.get("KUBECONFIG")
    if given:
        print(f"[main] using KUBECONFIG={given}", file=sys.stderr)
        return Path(given)
    if not start_cluster:
        return localcluster.kubeconfig()
    print("[main] no KUBECONFIG: starting the local control plane", file=sys.stderr)
    return localcluster.up()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.main", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "action", nargs="?", default="up", choices=["up", "preview", "destroy", "outputs", "down"]
    )
    parser.add_argument("--stack", default="local")
    parser.add_argument("--state", type=Path, default=None, help="file backend directory")
    args = parser.parse_args(argv)
    state = args.state or cache_root() / "state"
    if args.action == "down":
        localcluster.down()
        return 0
    try:
        kubeconfig = _kubeconfig(start_cluster=args.action in ("up", "preview"))
        eng = engine.engine(state, kubeconfig)
    except (BuildError, localcluster.LocalClusterError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    stack = engine.local_stack(eng, engine.work_dir(state, args.stack), args.stack)
    out = lambda line: print(line, flush=True)  # noqa: E731
    try:
        if args.action == "up":
            stack.up(on_output=out, color="never")
        elif args.action == "preview":
            stack.preview(on_output=out, color="never")
        elif args.action == "destroy":
            stack.destroy(on_output=out, color="never")
            return 0
    except auto.CommandError as err:  # the engine already printed its diagnostics above
        lines = [
            ln.split("error:", 1)[1].strip()
            for ln in str(err).splitlines()
            if "error:" in ln and "an unhandled error occurred" not in ln
        ]
        reason = lines[0] if lines else "see the engine output above"
        print(f"error: pulumi {args.action} failed: {reason}", file=sys.stderr)
        return 1
    except (OSError, RuntimeError) as err:  # e.g. the engine could not be started at all
        print(f"error: pulumi {args.action} could not run: {err}", file=sys.stderr)
        return 1
    print(json.dumps(engine.outputs(stack), indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
