"""What the rayStartParams check accepts, KubeRay renders into a command `ray start` parses.

KubeRay 1.6.1 writes the group's map into the pod's `bash -c` line itself (common/pod.go,
`setMissingRayStartParams` and `convertParamMap`); `_kuberay_words` does the same here and bash's
quote removal is `shlex`'s, so Ray 2.60's own option parser (its click command, parsing only; no
Ray is started) judges every value the check lets through.
"""

from __future__ import annotations

import shlex

import click
import pytest
from ray.scripts.scripts import start

from infra.settings import ray_start

# The keys KubeRay writes as --<key>=true/false; for every other key "true" is the bare switch
# and "false" nothing.
KUBERAY_VALUED = ("log-color", "include-dashboard")
WORKER_ADDRESS = "raycluster-head-svc.ray.svc.cluster.local:6379"

# One value of every shape a stack file might hold: booleans in KubeRay's and click's spellings,
# numbers, choices, paths, lists, and JSON in both shell quotings.
CANDIDATES = (
    "true",
    "false",
    "True",
    "FALSE",
    "yes",
    "1",
    "0",
    "8265",
    "4000000000",
    "1.5",
    "auto",
    "pretty",
    "/tmp/ray",
    "zone=a,tier=spot",
    "10002,10003",
    "'{\"custom\": 1}'",
    '"{\\"custom\\": 1}"',
)


def _kuberay_words(params: dict[str, str], *, head: bool) -> list[str]:
    """The `ray start` arguments KubeRay runs for a group's rayStartParams, after bash."""
    params = {**params, "block": "true"}  # always added, over the group's own
    if not head:
        params.setdefault("address", WORKER_ADDRESS)
    line = []
    for key in sorted(params):
        value = params[key]
        if value.lower() in ("true", "false") and key not in KUBERAY_VALUED:
            if value.lower() == "true":
                line.append(f"--{key}")
        else:
            line.append(f"--{key}={value}")
    return (["--head"] if head else []) + shlex.split(" ".join(line))


def _parses(words: list[str]) -> str | None:
    try:
        start.make_context("start", words)
    except click.ClickException as e:
        return e.format_message()
    return None


@pytest.mark.parametrize("head", [True, False], ids=["head", "worker"])
def test_every_accepted_value_parses(head: bool) -> None:
    refused_by_ray = []
    for key in ray_start.OPTIONS:
        for value in CANDIDATES:
            if ray_start.problems({key: value}, head=head):
                continue
            error = _parses(_kuberay_words({key: value}, head=head))
            if error is not None:
                refused_by_ray.append(f"{key}={value!r}: {error}")
    assert refused_by_ray == []


def test_a_value_for_a_bare_boolean_is_what_ray_refuses() -> None:
    """The case the check exists for: "true" to a type=bool option becomes a bare option, which
    lacks its value (or takes the next option as one)."""
    error = _parses(_kuberay_words({"include-log-monitor": "true"}, head=True))
    assert error is not None and "--include-log-monitor" in error
    assert ray_start.problems({"include-log-monitor": "true"}, head=True)
    assert _parses(_kuberay_words({"include-log-monitor": "0"}, head=True)) is None


def test_options_are_ray_starts_own() -> None:
    """The table holds every `ray start` option, each of its kind: switches are click's flags
    and counts, the booleans its type=bool options."""
    declared = {p.opts[-1].removeprefix("--"): p for p in start.params}
    assert set(ray_start.OPTIONS) == set(declared)
    for key, check in ray_start.OPTIONS.items():
        param = declared[key]
        assert isinstance(param, click.Option)
        is_switch = param.is_flag or param.count
        assert (check is ray_start._switch) == is_switch, key
        is_boolean = not is_switch and isinstance(param.type, click.types.BoolParamType)
        assert is_boolean == (check in (ray_start._boolean, ray_start._true_or_false)), key
        assert (check is ray_start._true_or_false) == (is_boolean and key in KUBERAY_VALUED), key
