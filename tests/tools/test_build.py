"""tools/build.py without Go: fingerprints, go.mod reading, the versions.json/wrapper check, the
cache layout and the `current` links. These decide whether a 26-minute build is reused or redone.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tools import build

GOMOD = """\
// Wrapper module.
module rayplatform.invalid/tools/demo

go 1.26.0

require example.com/tool v1.2.3

require (
\texample.com/dep v0.1.0 // indirect
\texample.com/other v0.2.0 // indirect
)
"""

# The same module, reformatted: one block, other order, other comments.
GOMOD_REFORMATTED = """\
module rayplatform.invalid/tools/demo
go 1.26.0
require (
\texample.com/other v0.2.0
\texample.com/tool v1.2.3 // direct
\texample.com/dep v0.1.0
)
"""

SPEC: dict[str, Any] = {
    "version": "v1.2.3",
    "wrapper": "demo",
    "package": ".",
    "go_modules": {"example.com/tool": "v1.2.3"},
    "ldflags_x": {"example.com/tool/version.Version": "v1.2.3"},
    "smoke": {"args": ["--version"], "expect": "v1.2.3"},
}


@pytest.fixture
def wrappers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "go"
    (root / "demo").mkdir(parents=True)
    (root / "demo" / "go.mod").write_text(GOMOD)
    (root / "demo" / "go.sum").write_text("example.com/tool v1.2.3 h1:abc=\n")
    (root / "demo" / "main.go").write_text("package main\n")
    monkeypatch.setattr(build, "WRAPPERS_DIR", root)
    monkeypatch.setenv("RAY_PLATFORM_CACHE", str(tmp_path / "cache"))
    return root / "demo"


# ------------------------------------------------------------------------------ go.mod handling


def test_gomod_normalisation_ignores_layout_order_and_comments() -> None:
    assert build._normalized_gomod(GOMOD) == build._normalized_gomod(GOMOD_REFORMATTED)


def test_gomod_normalisation_sees_a_version_change() -> None:
    bumped = GOMOD.replace("example.com/dep v0.1.0", "example.com/dep v0.1.1")
    assert build._normalized_gomod(bumped) != build._normalized_gomod(GOMOD)


def test_parse_gomod_reads_both_forms_of_require_and_replace() -> None:
    text = GOMOD + (
        "replace example.com/tool => example.com/tool v1.2.4\n"
        "replace (\n"
        "\tk8s.io/api => k8s.io/api v0.35.4 // staging\n"
        "\texample.com/local => ../local\n"
        "\texample.com/pinned v1.0.0 => example.com/fork v1.0.1\n"
        ")\n"
    )
    mod = build.parse_gomod(text)
    assert mod.requires == {
        "example.com/tool": "v1.2.3",
        "example.com/dep": "v0.1.0",
        "example.com/other": "v0.2.0",
    }
    assert mod.replaces == {
        "example.com/tool": ("example.com/tool", "v1.2.4"),
        "k8s.io/api": ("k8s.io/api", "v0.35.4"),
        "example.com/local": ("../local", ""),
        "example.com/pinned": ("example.com/fork", "v1.0.1"),
    }


def test_parse_gomod_reads_both_forms_of_tool() -> None:
    text = GOMOD + (
        "tool example.com/tool/cmd/one\n"
        "tool (\n"
        "\texample.com/tool/cmd/two\n"
        "\texample.com/tool/cmd/three // comment\n"
        ")\n"
    )
    assert build.parse_gomod(text).tools == {
        "example.com/tool/cmd/one",
        "example.com/tool/cmd/two",
        "example.com/tool/cmd/three",
    }
    assert build.parse_gomod(GOMOD).tools == set()


# ---------------------------------------------------------------------------------- fingerprint


def test_fingerprint_survives_reformatting_go_mod(wrappers: Path) -> None:
    before = build._fingerprint("demo", SPEC)
    (wrappers / "go.mod").write_text(GOMOD_REFORMATTED)
    assert build._fingerprint("demo", SPEC) == before


@pytest.mark.parametrize(
    "change",
    [
        lambda w, s: (w / "main.go").write_text("package main\n\nfunc init() {}\n"),
        lambda w, s: (w / "go.sum").write_text("example.com/tool v1.2.3 h1:other=\n"),
        lambda w, s: (w / "extra.go").write_text("package main\n"),
        lambda w, s: s.update(ldflags_x={"example.com/tool/version.Version": "dirty"}),
        lambda w, s: s.update(tags=["osusergo"]),
        lambda w, s: s.update(version="v1.2.4"),
    ],
    ids=["main.go", "go.sum", "new-go-file", "ldflags", "tags", "version"],
)
def test_fingerprint_changes_with_what_changes_the_binary(wrappers: Path, change: Any) -> None:
    spec = json.loads(json.dumps(SPEC))
    before = build._fingerprint("demo", spec)
    change(wrappers, spec)
    assert build._fingerprint("demo", spec) != before


def test_fingerprint_ignores_notes_smoke_test_and_links(wrappers: Path) -> None:
    spec = json.loads(json.dumps(SPEC))
    before = build._fingerprint("demo", spec)
    spec.update(_note="why", smoke={"args": ["-v"], "expect": "x"}, current="symlink")
    (wrappers / "README.md").write_text("not part of the build\n")
    assert build._fingerprint("demo", spec) == before
    assert build._fingerprint("other-name", spec) != before


# ------------------------------------------------------------------ versions.json and wrappers


def test_wrapper_matching_versions_json_passes(wrappers: Path) -> None:
    build._check_wrapper("demo", SPEC)


def test_wrapper_out_of_step_with_versions_json_names_the_fix(wrappers: Path) -> None:
    spec = {**SPEC, "go_modules": {"example.com/tool": "v1.2.4"}}
    with pytest.raises(build.BuildError) as info:
        build._check_wrapper("demo", spec)
    message = str(info.value)
    assert "requires example.com/tool v1.2.3" in message
    assert "versions.json says v1.2.4" in message
    assert message.endswith("run `python -m tools.build --sync demo`")
    assert "\n" not in message


def test_missing_wrapper_module_is_reported(wrappers: Path) -> None:
    with pytest.raises(build.BuildError, match=r"missing wrapper module tools/go/nope/go\.mod"):
        build._check_wrapper("nope", {**SPEC, "wrapper": "nope"})


def test_an_upstream_package_needs_a_tool_line(wrappers: Path) -> None:
    """`go build PKG` from the wrapper works only for a package its go.mod tracks as a tool."""
    spec = {**SPEC, "package": "example.com/tool/cmd/tool"}
    with pytest.raises(build.BuildError) as info:
        build._check_wrapper("demo", spec)
    message = str(info.value)
    assert "go.mod has no `tool example.com/tool/cmd/tool` line for demo" in message
    assert message.endswith("run `python -m tools.build --sync demo`")
    (wrappers / "go.mod").write_text(GOMOD + "tool example.com/tool/cmd/tool\n")
    build._check_wrapper("demo", spec)


def test_the_wrapper_itself_needs_a_main_package(wrappers: Path) -> None:
    (wrappers / "main.go").unlink()
    (wrappers / "main_test.go").write_text("package main\n")
    with pytest.raises(build.BuildError, match=r'\(package "\."\) but it holds no main\.go'):
        build._check_wrapper("demo", SPEC)


def test_staging_replaces_must_all_use_the_staging_version(wrappers: Path) -> None:
    spec = {**SPEC, "k8s_staging_version": "v0.35.4"}
    base = GOMOD + "replace (\n\tk8s.io/api => k8s.io/api v0.35.4\n"
    (wrappers / "go.mod").write_text(base + ")\n")
    build._check_wrapper("demo", spec)
    (wrappers / "go.mod").write_text(base + "\tk8s.io/client-go => k8s.io/client-go v0.35.3\n)\n")
    with pytest.raises(build.BuildError, match=r"replaces k8s\.io/client-go with a version other"):
        build._check_wrapper("demo", spec)


def test_committed_wrappers_match_versions_json() -> None:
    """The real files: a versions.json bump without `--sync` fails here, not after a build."""
    versions = build.load_versions()
    assert versions["tools"], "versions.json lists no binaries"
    for name, spec in versions["tools"].items():
        build._check_wrapper(name, spec)


# What a Kubernetes node runs, besides the control plane: built like everything else here.
NODE_BINARIES = {
    "kubelet": "kubernetes",
    "kube-proxy": "kubernetes",
    "kube-scheduler": "kubernetes",
    "kubectl": "kubernetes",
    "containerd": "containerd",
    "containerd-shim-runc-v2": "containerd",
    "ctr": "containerd",
    "coredns": "coredns",
    "registry": "registry",
    "pause": "pause",
}


def test_node_binaries_are_declared_with_a_smoke_check_of_their_version() -> None:
    tools = build.load_versions()["tools"]
    for name, wrapper in NODE_BINARIES.items():
        spec = tools[name]
        assert spec["wrapper"] == wrapper, name
        # The version printed proves the version stamp (ldflags) took.
        assert spec["version"].removeprefix("v") in spec["smoke"]["expect"], name


@pytest.mark.parametrize("wrapper", ["kubernetes", "containerd"])
def test_binaries_of_one_wrapper_share_its_module_and_version_stamp(wrapper: str) -> None:
    """kubelet and kube-apiserver (or containerd and its shim) come from one module version; a
    bump that reaches one of them only would build a mixed node."""
    specs = {n: s for n, s in build.load_versions()["tools"].items() if s["wrapper"] == wrapper}
    assert len(specs) >= 3
    first = next(iter(specs.values()))
    for name, spec in specs.items():
        for key in ("version", "go_modules", "ldflags_x", "k8s_staging_version"):
            assert spec.get(key) == first.get(key), (name, key)
    if wrapper == "kubernetes":
        assert {s["tags"] == first["tags"] for s in specs.values()} == {True}
        assert first["ldflags_x"]["k8s.io/component-base/version.gitVersion"] == first["version"]


def test_unknown_binary_is_a_one_line_error() -> None:
    with pytest.raises(build.BuildError, match=r"unknown binary 'nope'; known: pulumi, "):
        build._spec("nope")


# ------------------------------------------------------------------------ cache and `current`


def test_cached_binary_is_reused_only_with_the_same_fingerprint(wrappers: Path) -> None:
    install = build._install_dir("demo", SPEC)
    assert install == build.cache_root() / "bin" / "demo-v1.2.3"
    install.mkdir(parents=True)
    binary = install / "demo"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    info = {"fingerprint": build._fingerprint("demo", SPEC)}
    (install / ".build-info.json").write_text(json.dumps(info))
    assert build._cached("demo", SPEC) == binary
    (wrappers / "main.go").write_text("package main // changed\n")
    assert build._cached("demo", SPEC) is None


def test_current_links_point_at_the_install_dir(wrappers: Path) -> None:
    install = build._install_dir("demo", SPEC)
    install.mkdir(parents=True)
    (install / "demo").write_text("bin")
    (install / "demo-exec").write_text("helper")
    (install / ".build-info.json").write_text("{}")
    build._link_current(install / "demo", "symlink")
    current = build.bin_dir()
    assert current == build.cache_root() / "bin" / "current"
    assert (current / "demo").is_symlink()
    assert (current / "demo").resolve() == (install / "demo").resolve()
    assert (current / "demo-exec").read_text() == "helper"
    assert not (current / ".build-info.json").exists()
    # Relative links: the cache can move (RAY_PLATFORM_CACHE) without dangling links.
    assert not os.readlink(current / "demo").startswith("/")


def test_hardlinked_current_is_the_same_file(wrappers: Path) -> None:
    install = build._install_dir("demo", SPEC)
    install.mkdir(parents=True)
    (install / "demo").write_text("bin")
    build._link_current(install / "demo", "hardlink")
    link = build.bin_dir() / "demo"
    assert not link.is_symlink()
    assert os.path.samefile(link, install / "demo")
