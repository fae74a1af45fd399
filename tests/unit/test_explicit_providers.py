"""Explicit cloud providers: every AWS and GCP resource and lookup of every stack names the
provider its adapter builds from the settings (region, project), never the default one; and the
AWS/GCP stack files disable the default providers, so the engine refuses anything that would
fall back to ambient credentials' region or project (the mocks do not play that refusal: the
recording monitor's view of each registration and invoke is what holds it here)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tools.testing.pulumi_mocks import ROOT, ProgramRun, cached_run

CLOUD_PACKAGES = ("aws", "gcp")
STACK_FILES = sorted(ROOT.glob("Pulumi.*.yaml"))
STACKS = [p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in STACK_FILES]


def _config(path: Path) -> dict[str, object]:
    config: dict[str, object] = yaml.safe_load(path.read_text())["config"]
    return config


def _providers(run: ProgramRun) -> dict[str, str]:
    """URN → package of each explicit cloud provider the stack registers."""
    return {
        r.urn: r.type.removeprefix("pulumi:providers:")
        for r in run.registrations
        if r.type in {f"pulumi:providers:{p}" for p in CLOUD_PACKAGES}
    }


def _named(reference: str, providers: dict[str, str], package: str) -> bool:
    """A provider reference (`<urn>::<id>`) names one of the stack's providers of `package`."""
    urn = reference.rsplit("::", 1)[0] if reference else ""
    return providers.get(urn) == package


@pytest.mark.parametrize("stack", STACKS)
def test_every_cloud_resource_names_the_adapters_provider(stack: str) -> None:
    run = cached_run(stack)
    providers = _providers(run)
    unnamed = [
        f"{r.type} {r.name}"
        for r in run.registrations
        if r.custom
        and r.type.split(":")[0] in CLOUD_PACKAGES
        and not _named(r.provider, providers, r.type.split(":")[0])
    ]
    assert unnamed == []


@pytest.mark.parametrize("stack", STACKS)
def test_every_cloud_lookup_names_the_adapters_provider(stack: str) -> None:
    run = cached_run(stack)
    providers = _providers(run)
    cloud_invokes = [i for i in run.invokes if i.token.split(":")[0] in CLOUD_PACKAGES]
    unnamed = [
        i.token for i in cloud_invokes if not _named(i.provider, providers, i.token.split(":")[0])
    ]
    assert unnamed == []
    cloud = _config(ROOT / f"Pulumi.{stack}.yaml")["ray-platform:cloud"]
    if cloud in CLOUD_PACKAGES:
        assert cloud_invokes, "the cluster lookups ran"


@pytest.mark.parametrize("stack", STACKS)
def test_each_cloud_stack_has_one_provider_from_its_settings(stack: str) -> None:
    run = cached_run(stack)
    config = _config(ROOT / f"Pulumi.{stack}.yaml")
    cloud = config["ray-platform:cloud"]
    registered = [r for r in run.registrations if r.urn in _providers(run)]
    if cloud not in CLOUD_PACKAGES:
        assert registered == []
        return
    (provider,) = registered
    assert provider.type == f"pulumi:providers:{cloud}"
    if cloud == "aws":
        assert provider.inputs["region"] == config["aws:region"]
    else:
        assert provider.inputs["project"] == config["gcp:project"]


@pytest.mark.parametrize("path", STACK_FILES, ids=lambda p: p.name)
def test_cloud_stacks_disable_the_default_providers(path: Path) -> None:
    config = _config(path)
    if config["ray-platform:cloud"] not in CLOUD_PACKAGES:
        return
    disabled = config.get("pulumi:disable-default-providers")
    assert isinstance(disabled, list) and set(CLOUD_PACKAGES) <= set(disabled)
