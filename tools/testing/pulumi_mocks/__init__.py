"""Run the real `__main__.py` for a stack under Pulumi mocks, and record what it registers.

The harness of the unit, schema, policy and scan tiers, the scanner
(`python -m tools.testing.scan`), the golden registrations (`tools.testing.pulumi_mocks.golden`)
and the startup benchmark. It lives here, not under tests/, because tools import it and tools
never import tests.

The mocks stand in for the cloud and Kubernetes providers (which cannot run here): `aws.py`
answers AWS data sources and creates Kubernetes objects, `gcp.py` adds GKE's. Which of them a
stack gets follows its `ray-platform:cloud` setting (`mocks_for`). A recording monitor keeps every
registration with its options (parent, protect, retain_on_delete, dependencies, provider), and the
provider each invoke (data-source lookup) names, so a test can hold every AWS and GCP resource and
lookup to the adapter's explicit provider.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import runpy
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import mocks as pmocks
from pulumi.runtime import rpc
from pulumi.runtime.sync_await import _sync_await

from tools.devcluster.engine import stack_file_config
from tools.testing.pulumi_mocks.aws import PlatformMocks
from tools.testing.pulumi_mocks.gcp import GkeMocks

ROOT = Path(__file__).resolve().parents[3]


def _optional_bool(request: Any, name: str) -> bool | None:
    """An `optional bool` field of the request: None when the program left it unset, which the
    engine reads as "inherit the parent's" (protect and retainOnDelete)."""
    return bool(getattr(request, name)) if request.HasField(name) else None


@dataclass
class Registration:
    """One RegisterResource request, as the engine would see it."""

    urn: str
    type: str
    name: str
    custom: bool
    parent: str
    protect: bool
    retain_on_delete: bool
    dependencies: list[str]
    provider: str
    inputs: dict[str, Any]
    delete_before_replace: bool = False
    replace_on_changes: list[str] = field(default_factory=list)
    aliases: list[str] = field(default_factory=list)
    """Each alias as text (the old type or name a resource was known by)."""
    protect_given: bool | None = None
    """`protect` as sent: None when unset (the engine then takes the parent's)."""
    retain_on_delete_given: bool | None = None
    """`retainOnDelete` as sent: None when unset (the engine then takes the parent's)."""
    ignore_changes: list[str] = field(default_factory=list)
    additional_secret_outputs: list[str] = field(default_factory=list)
    deleted_with: str = ""
    version: str = ""


@dataclass(frozen=True)
class Invoke:
    """One data-source call, as the engine would see it."""

    token: str
    provider: str
    """The provider reference (`<urn>::<id>`); empty when the call would use the default one."""


class RecordingMonitor(pmocks.MockMonitor):
    """A mock monitor that also keeps the options of every registration."""

    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self.registrations: list[Registration] = []
        self.invokes: list[Invoke] = []

    @property
    def registered_resources(self) -> list[Registration]:
        """The registrations other than providers: what a failed lookup must leave unregistered.
        A cloud adapter registers its provider before its lookups (an invoke names its provider
        by reference); a provider is configuration, no cloud call."""
        return [r for r in self.registrations if not r.type.startswith("pulumi:providers:")]

    def Invoke(self, request: Any) -> Any:
        self.invokes.append(Invoke(token=request.tok, provider=request.provider))
        return super().Invoke(request)  # type: ignore[no-untyped-call]

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)  # type: ignore[no-untyped-call]
        if request.type != "pulumi:pulumi:Stack":
            self.registrations.append(
                Registration(
                    urn=response.urn,
                    type=request.type,
                    name=request.name,
                    custom=request.custom,
                    parent=request.parent,
                    protect=bool(request.protect),
                    retain_on_delete=bool(request.retainOnDelete),
                    dependencies=list(request.dependencies),
                    provider=request.provider,
                    inputs=rpc.deserialize_properties(request.object),
                    delete_before_replace=bool(request.deleteBeforeReplace),
                    replace_on_changes=list(request.replaceOnChanges),
                    aliases=[str(a).replace("\n", " ") for a in request.aliases],
                    protect_given=_optional_bool(request, "protect"),
                    retain_on_delete_given=_optional_bool(request, "retainOnDelete"),
                    ignore_changes=list(request.ignoreChanges),
                    additional_secret_outputs=list(request.additionalSecretOutputs),
                    deleted_with=request.deletedWith,
                    version=request.version,
                )
            )
        return response


@dataclass
class ProgramRun:
    """The outcome of running `__main__.py` once under mocks."""

    registrations: list[Registration]
    outputs: dict[str, Any]
    calls: list[tuple[str, dict[str, Any]]]
    invokes: list[Invoke] = field(default_factory=list)

    def of_type(self, typ: str) -> list[Registration]:
        return [r for r in self.registrations if r.type == typ]

    def one(self, typ: str, name: str | None = None) -> Registration:
        found = [r for r in self.of_type(typ) if name is None or r.name == name]
        assert len(found) == 1, f"expected one {typ} {name or ''}, found {[r.name for r in found]}"
        return found[0]


TEST_SECRETS = {"ray-platform:jupyterToken": "test-jupyter-token-0123456789abcdef"}
"""What `pulumi config set --secret` adds beside a stack file (never committed to one)."""


def stack_config(stack: str) -> dict[str, Any]:
    """A stack file's `config:` section as written (one reader for the mock and e2e tiers),
    plus the secrets a user sets with `pulumi config set --secret`."""
    return {**TEST_SECRETS, **stack_file_config(stack)}


def flatten(config: Mapping[str, Any]) -> dict[str, str]:
    """Config as the engine hands it to the program: strings, structured values as JSON."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()}


def mocks_for(config: Mapping[str, Any]) -> PlatformMocks:
    """The provider answers for a stack's `ray-platform:cloud`: GKE's for gcp, AWS's (which
    also serve the local stack, whose only provider is Kubernetes) otherwise."""
    return GkeMocks() if config.get("ray-platform:cloud") == "gcp" else PlatformMocks()


def _resolve(value: Any) -> Any:
    if isinstance(value, pulumi.Output):
        return _sync_await(value.future())
    return value


def run_program(
    stack: str,
    config: Mapping[str, Any] | None = None,
    *,
    preview: bool = False,
    mocks: PlatformMocks | None = None,
    monitor: RecordingMonitor | None = None,
) -> ProgramRun:
    """Run the real `__main__.py` with `config` (default: the stack file's) under mocks (default:
    those for the config's cloud).

    Pass a `monitor` to inspect what was registered even when the program raises.
    """
    # Pulumi's mocks need a current event loop; code run earlier in the process (asyncio.run)
    # may have left none.
    asyncio.set_event_loop(asyncio.new_event_loop())
    config = stack_config(stack) if config is None else config
    mocks = mocks or mocks_for(config)
    monitor = monitor or RecordingMonitor(mocks)
    monitor.mocks = mocks
    pulumi.runtime.set_all_config(flatten(config))
    pulumi.runtime.set_mocks(
        mocks, project="ray-platform", stack=stack, preview=preview, monitor=monitor
    )
    exported: dict[str, Any] = {}
    original_export = pulumi.export

    def capture(name: str, value: Any) -> None:
        exported[name] = value
        original_export(name, value)

    pulumi.export = capture
    try:
        runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")
        outputs = {k: _resolve(v) for k, v in exported.items()}
        _sync_await(pulumi.runtime.stack.wait_for_rpcs())
    except BaseException:
        # Registrations are asynchronous: let those already started reach the monitor, so a
        # test can see whether anything was registered before the failure.
        with contextlib.suppress(BaseException):
            _sync_await(pulumi.runtime.stack.wait_for_rpcs())
        raise
    finally:
        pulumi.export = original_export
    return ProgramRun(monitor.registrations, outputs, mocks.calls, monitor.invokes)


_CACHE: dict[str, ProgramRun] = {}


def cached_run(stack: str) -> ProgramRun:
    """The stack file's run, once per process (the program is deterministic)."""
    if stack not in _CACHE:
        _CACHE[stack] = run_program(stack)
    return _CACHE[stack]
