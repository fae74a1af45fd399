"""`rayStartParams`: the `ray start` options a group may set, and what each value must be.

KubeRay 1.6.1 turns the map into the `ray start` command of the pod's `bash -c` line
(ray-operator/controllers/ray/common/pod.go, `convertParamMap`), one `--<key>=<value>` per entry,
unquoted, with one exception: a value "true" or "false" (in any case) becomes the bare `--<key>`
or is left out, unless the key is `log-color` or `include-dashboard`. So a value Ray's option
parser refuses (`num-cpus: "lots"`, or "true" for an option that needs a value) makes the pod
crash-loop with nothing said at `pulumi up`. The names and kinds below are those of `ray start` in
Ray 2.60 (python/ray/scripts/scripts.py, its click options); an unknown key is refused like every
other unknown setting: a typo would otherwise reach the pod as an option Ray refuses.

The head and the workers take different sets: KubeRay starts the head group with `--head` and
gives each worker `--address` (the head's GCS), and `ray start` without `--head` refuses some
options and ignores others (`WORKER_REFUSES`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping

OBJECT_STORE_MINIMUM = 75 * 1024 * 1024
"""Ray refuses a smaller object store (ray_constants.OBJECT_STORE_MINIMUM_MEMORY_BYTES)."""

# Values KubeRay pastes into a shell command line unquoted: anything a shell would interpret
# (spaces, `;`, `$`, quotes…, and the glob characters `*?[]`, which expand to matching file
# names) would change the command, not just the option.
_PLAIN = re.compile(r"^[A-Za-z0-9._:/,=@+\-]+$")
_WHOLE = re.compile(r"^[0-9]+$")
_DECIMAL = re.compile(r"^[0-9]+(\.[0-9]+)?$")

KUBERAY_VALUED_BOOLEANS = frozenset({"log-color", "include-dashboard"})
"""The keys KubeRay passes "true"/"false" to as `--<key>=<value>` (`specialParameterOptions`)."""

# click's boolean spellings (click.types.BoolParamType), less the two KubeRay turns into a switch.
_BOOLEAN_SPELLINGS = frozenset({"1", "0", "yes", "no", "on", "off", "y", "n", "t", "f"})

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


def _true_or_false(v: str) -> str | None:
    """A boolean KubeRay passes as a value (`KUBERAY_VALUED_BOOLEANS`): click reads any case."""
    return None if v.lower() in ("true", "false") else 'must be "true" or "false"'


def _boolean(v: str) -> str | None:
    """A boolean that is not one of KubeRay's valued ones: "true"/"false" never reach it as a
    value (`problems` says so), click's other spellings do."""
    if v.lower() in _BOOLEAN_SPELLINGS:
        return None
    return 'must be "1" or "0"'


def _switch(v: str) -> str | None:
    """A click flag (or count): it takes no value, so only KubeRay's bare `--<key>` works, which
    it writes for "true" in any case."""
    if v.lower() == "true":
        return None
    if v.lower() == "false":
        return (
            'is a switch KubeRay leaves out for "false", the same as not setting it: '
            'remove the key (or "true" to pass the switch)'
        )
    return (
        'is a switch: only "true" works (KubeRay passes any other value as --<key>=<value>, '
        "and `ray start` refuses a value for a switch)"
    )


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


_JSON_FORMS = (
    "must be a JSON object quoted for the shell KubeRay runs `ray start` in: in single quotes, "
    "e.g. '{\"custom\": 1}', or in double quotes with its quotes escaped and no $ or `, "
    'e.g. "{\\"custom\\": 1}"'
)


def _unquote(v: str) -> str | None:
    """The text bash makes of a quoted JSON value, or None where it would expand or split it.

    KubeRay writes the value unquoted, so the quotes must be in it: in single quotes bash takes
    everything literally; in double quotes it still expands `$…` and backquotes and reads `\\`,
    so only `\\"` (an escaped quote) is allowed there.
    """
    if any(ord(c) < 32 or ord(c) == 127 for c in v) or len(v) < 2 or v[0] != v[-1]:
        return None
    inner = v[1:-1]
    if v[0] == "'":
        return None if "'" in inner else inner
    if v[0] != '"' or re.search(r'[$`]|\\(?!")|(?<!\\)"', inner):
        return None
    return inner.replace('\\"', '"')


def _json_object(numbers: bool) -> Check:
    """A JSON object in either of the quotings bash passes on as one word, unchanged: KubeRay's
    own (`'{…}'`, how it writes `resources` itself) or its docs' (`"{\\"…\\": 1}"`)."""

    def check(v: str) -> str | None:
        text = _unquote(v)
        try:
            data = None if text is None else json.loads(text)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            return _JSON_FORMS
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
    # Ports (0: Ray picks one where it allows it). KubeRay sets metrics-export-port and
    # dashboard-agent-listen-port only when missing, and its probes follow the value given.
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
    # Booleans that take a value (click type=bool).
    "include-dashboard": _true_or_false,
    "include-log-monitor": _boolean,
    "log-color": _choice("auto", "false", "true"),
    "log-style": _choice("auto", "record", "pretty"),
    # Switches (click is_flag, and the count -v/--verbose). KubeRay always adds `block` itself,
    # after the group's own, so "true" there is harmless.
    "head": _switch,
    "block": _switch,
    "no-redirect-output": _switch,
    "enable-object-reconstruction": _switch,
    "no-monitor": _switch,
    "ray-debugger-external": _switch,
    "disable-usage-stats": _switch,
    "enable-resource-isolation": _switch,
    "verbose": _switch,
    # Resource isolation (with enable-resource-isolation).
    "system-reserved-cpu": _decimal,
    "system-reserved-memory": _bytes,
}

_ONLY_HEAD_RUNS = "only the head runs {}; a worker ignores it"

HEAD_REFUSES: dict[str, str] = {
    "head": "is KubeRay's to set: it starts the head group with --head",
    "address": (
        "on the head names an external Redis for the GCS (deprecated by Ray); the platform runs "
        "the GCS in the head pod"
    ),
}
"""Options the head group may not set, and why."""

WORKER_REFUSES: dict[str, str] = {
    "head": (
        "would start a second head (KubeRay starts the head group with --head and its workers "
        "without)"
    ),
    "address": "would replace the head's GCS address KubeRay gives each worker",
    # `ray start` without --head raises on these (scripts.py, its head-only flags): the worker
    # pod crash-loops.
    **dict.fromkeys(
        ("port", "redis-shard-ports", "include-dashboard"),
        "is for the head only: `ray start` without --head refuses it, so the worker crash-loops",
    ),
    # Read only by what `ray start --head` starts (node.py, start_head_processes) or by its
    # branch of `ray start`: set on a worker they change nothing, whatever the author meant.
    "dashboard-host": _ONLY_HEAD_RUNS.format("the dashboard"),
    "dashboard-port": _ONLY_HEAD_RUNS.format("the dashboard"),
    "ray-client-server-port": _ONLY_HEAD_RUNS.format("the Ray Client server"),
    "autoscaling-config": _ONLY_HEAD_RUNS.format("the autoscaler's monitor"),
    "no-monitor": _ONLY_HEAD_RUNS.format("the autoscaler's monitor"),
    "disable-usage-stats": "is read on the head only (it reports usage stats); a worker ignores it",
}
"""Options worker groups may not set, and why."""


def _true_false(key: str, value: str) -> str:
    """Why "true"/"false" do not reach an option that takes a value (KubeRay's exception)."""
    hint = '; write "1" or "0"' if OPTIONS[key] is _boolean else ""
    if value.lower() == "true":
        return (
            f'needs a value: KubeRay passes "true" as a bare --{key} (only log-color and '
            f"include-dashboard get --<key>=true), which `ray start` refuses{hint}"
        )
    return (
        f'is left out by KubeRay (it drops any option given "false" except log-color and '
        f"include-dashboard), so it changes nothing{hint}"
    )


def problems(params: Mapping[str, str], *, head: bool) -> list[tuple[str, str]]:
    """(key, problem) for each entry the head's (or a worker's) `ray start` would refuse or
    that would break the pod, in key order."""
    refuses = HEAD_REFUSES if head else WORKER_REFUSES
    found = []
    for key in sorted(params):
        value = params[key]
        check = OPTIONS.get(key)
        if check is None:
            found.append((key, "is not an option of `ray start` (check its spelling)"))
            continue
        if key in refuses:
            found.append((key, refuses[key]))
            continue
        takes_value = check is not _switch and key not in KUBERAY_VALUED_BOOLEANS
        if takes_value and value.lower() in ("true", "false"):
            found.append((key, _true_false(key, value)))
            continue
        problem = check(value)
        if problem is not None:
            found.append((key, problem))
    return found
