"""The KubeRay CRDs' chart the program installs as a Helm release (`infra/kuberay_release.py`):
the release's CRD files verbatim, a version that carries their digest, a path that is the same on
every machine."""

from __future__ import annotations

from pathlib import Path

import yaml

from infra import kuberay_release
from infra.kuberay_release import PINNED_VERSION


def test_the_chart_is_the_release_verbatim_under_a_relative_path(tmp_path: Path) -> None:
    path, version = kuberay_release.crd_chart(PINNED_VERSION, tmp_path)
    digest = kuberay_release.crd_digest(PINNED_VERSION)
    assert version == f"{PINNED_VERSION}+crds.{digest[:16]}"
    assert path == f"./.kuberay-crds/{PINNED_VERSION}_crds.{digest[:16]}"
    chart = tmp_path / path
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    assert meta["name"] == "kuberay-crds" and meta["version"] == version
    assert meta["appVersion"] == PINNED_VERSION
    names = sorted(p.name for p in (chart / "templates").iterdir())
    assert names == kuberay_release.crd_files(PINNED_VERSION)
    for plural in ("rayclusters", "rayjobs", "rayservices", "raycronjobs"):
        assert (
            f"name: {plural}.ray.io" in (chart / "templates" / f"ray.io_{plural}.yaml").read_text()
        )
    # Nothing half-written is left beside it.
    assert [p.name for p in (tmp_path / ".kuberay-crds").iterdir()] == [chart.name]


def test_the_chart_is_written_once(tmp_path: Path) -> None:
    path, _ = kuberay_release.crd_chart(PINNED_VERSION, tmp_path)
    chart_yaml = tmp_path / path / "Chart.yaml"
    before = chart_yaml.stat().st_mtime_ns
    assert kuberay_release.crd_chart(PINNED_VERSION, tmp_path)[0] == path
    assert chart_yaml.stat().st_mtime_ns == before


def test_another_release_is_another_chart_version(tmp_path: Path) -> None:
    """What the Helm release diffs: new CRDs give a new chart version, so `helm upgrade`."""
    assert "1.5.1" in kuberay_release.KNOWN_SUMS
    old, new = (kuberay_release.crd_chart(v, tmp_path) for v in ("1.5.1", PINNED_VERSION))
    assert old[1].startswith("1.5.1+crds.") and old[1] != new[1] and old[0] != new[0]
