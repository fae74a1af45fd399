"""The KubeRay CRDs' chart the program installs as a Helm release (`infra/kuberay_release.py`):
the release's CRDs unchanged, a version that carries the digest of what the chart holds, a path
that is the same on every machine, a Helm record that fits a Secret, Helm's keep policy where the
stack retains its CRDs."""

from __future__ import annotations

import base64
import gzip
import json
from pathlib import Path

import yaml

from infra import kuberay_release
from infra.kuberay_release import PINNED_VERSION

PLURALS = ("rayclusters", "rayjobs", "rayservices", "raycronjobs")


def _templates(chart: Path) -> dict[str, dict[str, object]]:
    return {p.name: json.loads(p.read_text()) for p in sorted((chart / "templates").iterdir())}


def test_the_chart_holds_the_releases_crds_unchanged_under_a_relative_path(
    tmp_path: Path,
) -> None:
    path, version = kuberay_release.crd_chart(PINNED_VERSION, project_dir=tmp_path)
    digest = kuberay_release.crd_digest(PINNED_VERSION)
    assert version == f"{PINNED_VERSION}+crds.{digest[:16]}"
    assert path == f"./.kuberay-crds/{PINNED_VERSION}_crds.{digest[:16]}"
    chart = tmp_path / path
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    assert meta["name"] == "kuberay-crds" and meta["version"] == version
    assert meta["appVersion"] == PINNED_VERSION
    templates = _templates(chart)
    assert sorted(templates) == kuberay_release.crd_files(PINNED_VERSION)
    # The very objects upstream ships (compact JSON is YAML too), nothing added in dev.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # 4 MB of YAML
    upstream = [d for d in yaml.load_all(kuberay_release.crd_yaml(PINNED_VERSION), loader) if d]
    assert sorted(templates.values(), key=json.dumps) == sorted(upstream, key=json.dumps)
    for plural in PLURALS:
        assert templates[f"ray.io_{plural}.yaml"]["metadata"]["name"] == f"{plural}.ray.io"  # type: ignore[index]
    assert oct(chart.stat().st_mode & 0o777) == oct(0o755)
    # Nothing half-written is left beside it.
    assert [p.name for p in (tmp_path / ".kuberay-crds").iterdir()] == [chart.name]


def test_a_stack_that_retains_its_crds_gets_helms_keep_policy_and_another_version(
    tmp_path: Path,
) -> None:
    """Without it an upgrade to a chart lacking a CRD (an older KubeRay, a `helm rollback`)
    deletes that CRD and every object of its kind, whatever retainOnDelete says."""
    dev_path, dev_version = kuberay_release.crd_chart(PINNED_VERSION, project_dir=tmp_path)
    prod_path, prod_version = kuberay_release.crd_chart(PINNED_VERSION, True, tmp_path)
    assert dev_version != prod_version and dev_path != prod_path
    for crd in _templates(tmp_path / prod_path).values():
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"  # type: ignore[index]
    for crd in _templates(tmp_path / dev_path).values():
        annotations = crd["metadata"].get("annotations") or {}  # type: ignore[attr-defined]
        assert "helm.sh/resource-policy" not in annotations


def test_helms_record_of_the_release_fits_a_secret_with_room_to_grow(tmp_path: Path) -> None:
    """Helm keeps each revision as one Secret (max 1 MiB): base64(gzip(JSON of the release)),
    which holds the rendered manifest and the chart's templates (base64 bytes). Upstream's YAML
    made it ~630 KB; a release that outgrew the limit could never be installed or upgraded."""
    path, _ = kuberay_release.crd_chart(PINNED_VERSION, True, tmp_path)
    chart = tmp_path / path
    files = {p.name: p.read_bytes() for p in sorted((chart / "templates").iterdir())}
    manifest = "".join(
        f"---\n# Source: kuberay-crds/templates/{name}\n{data.decode()}"
        for name, data in files.items()
    )
    release = {
        "name": "kuberay-crds",
        "manifest": manifest,
        "chart": {
            "metadata": yaml.safe_load((chart / "Chart.yaml").read_text()),
            "templates": [
                {"name": f"templates/{n}", "data": base64.b64encode(d).decode()}
                for n, d in files.items()
            ],
        },
    }
    record = base64.b64encode(gzip.compress(json.dumps(release).encode(), compresslevel=9))
    print(f"Helm record: {len(record)} bytes")
    assert len(record) < 512 * 1024, len(record)  # half the limit: twice today's CRDs fit


def test_the_chart_is_written_once_and_a_damaged_one_again(tmp_path: Path) -> None:
    path, _ = kuberay_release.crd_chart(PINNED_VERSION, project_dir=tmp_path)
    chart_yaml = tmp_path / path / "Chart.yaml"
    before = chart_yaml.stat().st_mtime_ns
    assert kuberay_release.crd_chart(PINNED_VERSION, project_dir=tmp_path)[0] == path
    assert chart_yaml.stat().st_mtime_ns == before
    # A hand-edited template is not installed under the chart's name: the chart is rewritten.
    template = tmp_path / path / "templates" / "ray.io_rayclusters.yaml"
    original = template.read_text()
    template.write_text(original.replace('"rayclusters.ray.io"', '"edited.ray.io"'))
    kuberay_release.crd_chart(PINNED_VERSION, project_dir=tmp_path)
    assert template.read_text() == original
    (tmp_path / path / "templates" / "ray.io_rayjobs.yaml").unlink()  # half deleted
    kuberay_release.crd_chart(PINNED_VERSION, project_dir=tmp_path)
    assert (tmp_path / path / "templates" / "ray.io_rayjobs.yaml").is_file()
    assert sorted(p.name for p in (tmp_path / ".kuberay-crds").iterdir()) == [Path(path).name]


def test_another_release_is_another_chart_version(tmp_path: Path) -> None:
    """What the Helm release diffs: new CRDs give a new chart version, so `helm upgrade`."""
    assert "1.5.1" in kuberay_release.KNOWN_SUMS
    old, new = (
        kuberay_release.crd_chart(v, project_dir=tmp_path) for v in ("1.5.1", PINNED_VERSION)
    )
    assert old[1].startswith("1.5.1+crds.") and old[1] != new[1] and old[0] != new[0]
