"""`rayStartParams`: the `ray start` options a group may set, and what each value must be.

KubeRay turns the map into `ray start --<key>=<value>` in the pod's shell command (a value
`"true"` becomes a bare `--<key>`, `"false"` drops it, except for the options that take a
boolean), so a value Ray's option parser refuses (`num-cpus: "lots"`) makes the pod crash-loop
with nothing said at `pulumi up`. The names and types below are those of `ray start` in Ray
2.60 (python/ray/scripts/scripts.py, its click options); an unknown key is refused like every
other unknown setting: a typo would otherwise reach the pod as an option Ray refuses.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping

OBJECT_STORE_MINIMUM = 75 * 1024 * 1024
"""Ray refuses a smaller object store (ray_constants.OBJECT_STORE_MINIMUM_MEMORY_BYTES)."""

# Values KubeRay pastes into a shell command line unquoted: anything a shell would interpret
# (spaces, `;`, `$`, quotes…) would change the command, not just the option.
_PLAIN = re.compile(r"^[A-Za-z0-9._:/,=@+\-\[\]]+$")
_WHOLE = re.compile(r"^[0-9]+$")
_DECIMAL = re.compile(r"^[0-9]+(\.[0-9]+)?$")

Check = Callable[[str], str | None]
"""A value's problem, or None."""


def _whole(v: str) -> str | None:
    return None if _WHOLE.match(v) else 'must be a whole number (as a string, e.g. "4")'


def _bytes(v: str) -> str | None:
    return None if _WHOLE.match(v) else 'must be a whole number of bytes (e.g. "2147483648")'


def _object_store(v: str) -> str | None:
    problem = _bytes(v)
    if problem is None and int(v) < OBJECT_STORE_MINIMUM:
        return f"is below {OBJECT_STORE_MINIMUM} bytes (75 MiB), the least Ray starts with"
    return problem


def _port(v: str) -> str | None:
    if _WHOLE.match(v) and int(v) <= 65535:
        return None
    return "must be a port number from 0 to 65535"


def _port_list(v: str) -> str | None:
    ports = v.split(",")
    if all(p and _port(p) is None and int(p) > 0 for p in ports):
        return None
    return "must be port numbers (1 to 65535) separated by commas"


def _decimal(v: str) -> str | None:
    return None if _DECIMAL.match(v) else "must be a number such as 1.5"


def _flag(v: str) -> str | None:
    return None if v.lower() in ("true", "false") else 'must be "true" or "false"'


def _choice(*allowed: str) -> Check:
    def check(v: str) -> str | None:
        return None if v in allowed else f"must be one of {', '.join(allowed)}"

    return check


def _plain(v: str) -> str | None:
    if _PLAIN.match(v):
        return None
    return (
        "has characters the shell that runs `ray start` would interpret (KubeRay does not "
        "quote it): use letters, digits and . _ : / , = @ + -"
    )


def _json_object(numbers: bool) -> Check:
    """A JSON object, shell-quoted as KubeRay's docs write it: `'"{\\"GPU_A\\": 1}"'`."""

    def check(v: str) -> str | None:
        example = '\'"{\\"custom\\": 1}"\''
        if len(v) < 2 or v[0] != '"' or v[-1] != '"' or re.search(r'(?<!\\)"', v[1:-1]):
            return f"must be a JSON object in double quotes with its quotes escaped, e.g. {example}"
        try:
            data = json.loads(v[1:-1].replace('\\"', '"'))
        except ValueError:
            data = None
        if not isinstance(data, dict):
            return f"must be a JSON object in double quotes with its quotes escaped, e.g. {example}"
        if numbers and not all(
            isinstance(n, int | float) and not isinstance(n, bool) and n >= 0 for n in data.values()
        ):
            return "must map resource names to non-negative numbers"
        return None

    return check


OPTIONS: dict[str, Check] = {
    # Resources this node offers Ray's scheduler.
    "num-cpus": _whole,
    "num-gpus": _whole,
    "memory": _bytes,
    "object-store-memory": _object_store,
    "resources": _json_object(numbers=True),
    "labels": _plain,
    "labels-file": _plain,
    # Ports (0: Ray picks one where it allows it).
    "port": _port,
    "object-manager-port": _port,
    "node-manager-port": _port,
    "min-worker-port": _port,
    "max-worker-port": _port,
    "worker-port-list": _port_list,
    "ray-client-server-port": _port,
    "dashboard-port": _port,
    "dashboard-agent-listen-port": _port,
    "dashboard-agent-grpc-port": _port,
    "runtime-env-agent-port": _port,
    "metrics-export-port": _port,
    # Addresses, names and paths.
    "address": _plain,
    "node-ip-address": _plain,
    "node-name": _plain,
    "dashboard-host": _plain,
    "redis-username": _plain,
    "redis-password": _plain,
    "redis-shard-ports": _plain,
    "plasma-directory": _plain,
    "object-spilling-directory": _plain,
    "temp-dir": _plain,
    "autoscaling-config": _plain,
    "tracing-startup-hook": _plain,
    "cgroup-path": _plain,
    "proxy-server-url": _plain,
    "system-config": _json_object(numbers=False),
    # Options that take true/false (KubeRay passes these as values).
    "include-dashboard": _flag,
    "include-log-monitor": _flag,
    "log-color": _choice("auto", "false", "true"),
    "log-style": _choice("auto", "record", "pretty"),
    # Switches: "true" adds the bare option, "false" leaves it out.
    "head": _flag,
    "block": _flag,
    "no-redirect-output": _flag,
    "enable-object-reconstruction": _flag,
    "no-monitor": _flag,
    "ray-debugger-external": _flag,
    "disable-usage-stats": _flag,
    "enable-resource-isolation": _flag,
    "verbose": _flag,
    # Resource isolation (with enable-resource-isolation).
    "system-reserved-cpu": _decimal,
    "system-reserved-memory": _bytes,
}


def problems(params: Mapping[str, str]) -> list[tuple[str, str]]:
    """(key, problem) for each value `ray start` would refuse, in key order."""
    found = []
    for key in sorted(params):
        check = OPTIONS.get(key)
        if check is None:
            found.append((key, "is not an option of `ray start` (check its spelling)"))
            continue
        problem = check(params[key])
        if problem is not None:
            found.append((key, problem))
    return found
