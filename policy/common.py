"""What every rule module shares: rule construction, the dev/prod mode, and careful readers.

Rules read resource inputs through the policy SDK's unknown-checking proxy: touching a value that
is unknown at preview raises UnknownValueError, which the SDK reports (advisory) as "can't run
policy ... during preview" instead of letting the rule pass silently. `CannotCheck` uses the same
channel for facts a rule needs that the engine does not send at all.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from pulumi_policy import (
    PolicyConfigSchema,
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, UnknownValueError

DEV, PROD = "dev", "prod"

# Mode-dependent rules take their mode from the pack's config (policy/config/<mode>.json). Unset
# means prod: a pack run without config errs on the strict side.
MODE_SCHEMA = PolicyConfigSchema(
    properties={"mode": {"type": "string", "enum": [DEV, PROD], "default": PROD}}
)

ResourceCheck = Callable[[ResourceValidationArgs, ReportViolation], None]
StackCheck = Callable[[StackValidationArgs, ReportViolation], None]


class CannotCheck(UnknownValueError):
    """A rule could not decide; the SDK turns this into an advisory "can't run policy" note."""

    def __init__(self, reason: str) -> None:
        super().__init__(UNKNOWN_STRING_VALUE, [])
        self.message = reason


def resource_rule(
    rule_id: str,
    description: str,
    remediation: str,
    check: ResourceCheck,
    *,
    types: Sequence[str] | None = None,
    moded: bool = False,
) -> ResourceValidationPolicy:
    """A resource rule; `types` limits it to those type tokens (None: every resource)."""

    def validate(args: ResourceValidationArgs, report: ReportViolation) -> None:
        if types is None or args.resource_type in types:
            check(args, report)

    return ResourceValidationPolicy(
        name=rule_id,
        description=description,
        validate=validate,
        remediation_steps=remediation,
        config_schema=MODE_SCHEMA if moded else None,
    )


def stack_rule(
    rule_id: str, description: str, remediation: str, check: StackCheck, *, moded: bool = False
) -> StackValidationPolicy:
    return StackValidationPolicy(
        name=rule_id,
        description=description,
        validate=check,
        remediation_steps=remediation,
        config_schema=MODE_SCHEMA if moded else None,
    )


def mode(args: ResourceValidationArgs | StackValidationArgs) -> str:
    value = args.get_config().get("mode", PROD)
    return str(value) if value in (DEV, PROD) else PROD


# --------------------------------------------------------------------------- readers


def known(props: Mapping[str, Any], key: str) -> Any:
    """props[key], or None when absent or unknown: for linking resources, never for verdicts."""
    try:
        return props.get(key)
    except UnknownValueError:
        return None


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, Sequence) and not isinstance(value, str):
        return list(value)
    return [value]


def path(props: Mapping[str, Any], *keys: str) -> Any:
    """Nested lookup that stops at the first missing level (unknowns still raise)."""
    cur: Any = props
    for k in keys:
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(k)
    return cur


def json_document(document: Any, what: str, kind: str = "policy document") -> Mapping[str, Any]:
    """A JSON object given as JSON text (what the AWS provider stores) or already parsed;
    CannotCheck naming `what` otherwise."""
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except ValueError as e:
            raise CannotCheck(f"{what} is not valid JSON: {e}") from e
    if not isinstance(document, Mapping):
        raise CannotCheck(f"{what} is not a {kind}")
    return document


def policy_statements(document: Any, what: str) -> list[Mapping[str, Any]]:
    """The statements of an IAM/resource policy given as JSON text or an object."""
    if document is None:
        return []
    document = json_document(document, what)
    return [s for s in as_list(document.get("Statement")) if isinstance(s, Mapping)]


def tls_only(statements: list[Mapping[str, Any]]) -> bool:
    """Whether a Deny statement refuses requests with aws:SecureTransport = false."""
    for s in statements:
        if s.get("Effect") != "Deny":
            continue
        cond = s.get("Condition") or {}
        secure = (cond.get("Bool") or {}).get("aws:SecureTransport")
        if str(secure).lower() == "false":
            return True
    return False


def linked(child: PolicyResource, parent: PolicyResource, key: str) -> bool:
    """Whether `child` configures `parent`: it depends on it, or names it in `key`."""
    if any(d.urn == parent.urn for d in child.dependencies):
        return True
    for dep in child.property_dependencies.values():
        if any(d.urn == parent.urn for d in dep):
            return True
    name = known(child.props, key)
    return name is not None and name in (
        known(parent.props, "bucket"),
        known(parent.props, "id"),
        known(parent.props, "name"),
    )


def of_type(resources: Sequence[PolicyResource], *types: str) -> list[PolicyResource]:
    return [r for r in resources if r.resource_type in types]


def env_entries(container: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    for e in as_list(container.get("env")):
        if isinstance(e, Mapping):
            yield e


def env_value(container: Mapping[str, Any], name: str) -> Any:
    for e in env_entries(container):
        if e.get("name") == name:
            return e.get("value")
    return None
