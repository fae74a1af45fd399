"""An offline runner for the pack: builds the policy SDK's own validation-args objects from
resources (synthetic ones, or the registrations of the real program under mocks) and collects
what the engine would report.

It mirrors the engine where it matters: enforcement from the `--policy-pack-config` document
("all", then per rule), schema defaults as rule config, inputs behind the SDK's unknown-checking
proxy (an unknown value makes an advisory "can't run policy" finding), resource rules per
resource, stack rules once over all resources with parents and dependencies linked.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UnknownValueError, unknown_checking_proxy

from policy.pack import POLICIES

STACK = "test"


@dataclass(frozen=True)
class Resource:
    type: str
    name: str
    inputs: Mapping[str, Any]
    protect: bool = False
    # None: the options say nothing about it (as the engine sends them today).
    retain_on_delete: bool | None = False
    dependencies: Sequence[str] = ()
    parent: str = ""
    given_urn: str = ""

    @property
    def urn(self) -> str:
        return self.given_urn or urn(self.type, self.name)


def urn(typ: str, name: str) -> str:
    return f"urn:pulumi:{STACK}::ray-platform::{typ}::{name}"


@dataclass(frozen=True)
class Finding:
    policy: str
    level: str
    message: str
    urn: str = ""
    unchecked: bool = False

    @property
    def mandatory(self) -> bool:
        return self.level == EnforcementLevel.MANDATORY.value


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)

    def ids(self, level: str | None = None) -> set[str]:
        return {f.policy for f in self.findings if level is None or f.level == level}

    @property
    def mandatory(self) -> set[str]:
        return self.ids(EnforcementLevel.MANDATORY.value)

    @property
    def unchecked(self) -> set[str]:
        return {f.policy for f in self.findings if f.unchecked}


def from_registrations(registrations: Iterable[Any]) -> list[Resource]:
    """tests.conftest Registration objects (a real program run under mocks) as resources."""
    out = []
    for r in registrations:
        if not r.custom:
            continue
        name = r.urn.rsplit("::", 1)[-1]
        out.append(
            Resource(
                type=r.type,
                name=name,
                inputs=r.inputs,
                protect=r.protect,
                retain_on_delete=r.retain_on_delete,
                dependencies=tuple(r.dependencies),
                parent=r.parent,
                given_urn=r.urn,
            )
        )
    return out


def _level(policy: Policy, config: Mapping[str, Any]) -> EnforcementLevel:
    own = config.get(policy.name)
    if isinstance(own, str):
        return EnforcementLevel(own)
    if isinstance(own, Mapping) and "enforcementLevel" in own:
        return EnforcementLevel(own["enforcementLevel"])
    if "all" in config:
        return EnforcementLevel(config["all"])
    return policy.enforcement_level or EnforcementLevel.ADVISORY


def _properties(policy: Policy, config: Mapping[str, Any]) -> dict[str, Any]:
    props: dict[str, Any] = {}
    if policy.config_schema is not None:
        for key, schema in policy.config_schema.properties.items():
            if "default" in schema:
                props[key] = schema["default"]
    own = config.get(policy.name)
    if isinstance(own, Mapping):
        props.update({k: v for k, v in own.items() if k != "enforcementLevel"})
    return props


def _options(r: Resource) -> PolicyResourceOptions:
    opts = PolicyResourceOptions(
        r.protect, [], None, [], PolicyCustomTimeouts(0, 0, 0), [], r.parent or None
    )
    if r.retain_on_delete is not None:
        # Not a field of the SDK's class; policy/stack.py reads it when present.
        opts.retain_on_delete = r.retain_on_delete  # type: ignore[attr-defined]
    return opts


def _props(r: Resource) -> Mapping[str, Any]:
    return unknown_checking_proxy(copy.deepcopy(dict(r.inputs)))


def run(
    resources: Sequence[Resource],
    config: Mapping[str, Any] | None = None,
    policies: Sequence[Policy] = POLICIES,
) -> Report:
    """Run `policies` over `resources` with a `--policy-pack-config` document."""
    config = config or {}
    report = Report()
    stack_resources = _stack_resources(resources)
    for policy in policies:
        level = _level(policy, config)
        if level == EnforcementLevel.DISABLED:
            continue
        if level == EnforcementLevel.REMEDIATE:
            level = EnforcementLevel.MANDATORY
        props = _properties(policy, config)

        def violation(
            message: str,
            at: str | None = None,
            *,
            _p: Policy = policy,
            _l: EnforcementLevel = level,
            _u: str = "",
        ) -> None:
            report.findings.append(Finding(_p.name, _l.value, message, at or _u))

        try:
            if isinstance(policy, ResourceValidationPolicy):
                for r in resources:
                    args = ResourceValidationArgs(
                        r.type, _props(r), r.urn, r.name, _options(r), None, props
                    )

                    # Resource rules report against the resource itself, whatever urn they pass.
                    def on(message: str, _at: str | None = None, _r: Resource = r) -> None:
                        violation(message, _r.urn)

                    try:
                        policy.validate(args, on)
                    except UnknownValueError as e:
                        report.findings.append(_unchecked(policy, e, r.urn))
            elif isinstance(policy, StackValidationPolicy):
                policy.validate(StackValidationArgs(stack_resources, props), violation)
        except UnknownValueError as e:
            report.findings.append(_unchecked(policy, e, ""))
    return report


def _unchecked(policy: Policy, e: UnknownValueError, at: str) -> Finding:
    # The SDK reports these at advisory level whatever the rule's enforcement.
    return Finding(policy.name, EnforcementLevel.ADVISORY.value, e.message, at, unchecked=True)


def _stack_resources(resources: Sequence[Resource]) -> list[PolicyResource]:
    built = {
        r.urn: PolicyResource(r.type, _props(r), r.urn, r.name, _options(r), None, None, [], {})
        for r in resources
    }
    for r in resources:
        pr = built[r.urn]
        pr.parent = built.get(r.parent)
        pr.dependencies = [built[d] for d in r.dependencies if d in built]
    return list(built.values())
