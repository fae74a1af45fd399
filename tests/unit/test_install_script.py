"""The dev shared-packages installer (the head's init container script), run for real under
/bin/sh against a throwaway virtualenv standing in for the Ray image, with a local wheel index
(no network)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from components.kuberay.raycluster_spec import INSTALL_SCRIPT, PACKAGES_VENV
from tests.wheels import write_wheel


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An environment like the Ray image's: a base (non-venv) `python` with pip, and packages
    the image already ships (here on its PYTHONPATH, so the real interpreter stays untouched)."""
    root = tmp_path_factory.mktemp("image")
    bin_dir = root / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys._base_executable)  # type: ignore[attr-defined]
    index = root / "index"
    index.mkdir()
    for name, version in (("rayish", "1.0"), ("rayish", "2.0"), ("extra", "0.1")):
        write_wheel(index, name, version)
    write_wheel(index, "needsrayish", "0.1", requires="rayish")
    # A locally built package the index cannot serve (like torch==2.5.1+cu121 in GPU images).
    write_wheel(index, "torchy", "2.5.1+cu121")
    write_wheel(index, "needstorchy", "0.1", requires="torchy")
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(index),
        "PYTHONPATH": str(root / "image-site"),
        "HOSTNAME": "ray-head-abcde",
    }
    env.pop("VIRTUAL_ENV", None)
    subprocess.run(
        [
            *("python", "-m", "pip", "install", "-q", "--target", str(root / "image-site")),
            *("rayish==1.0", "torchy==2.5.1+cu121"),
        ],
        env=env,
        check=True,
    )
    (index / "torchy-2.5.1+cu121-py3-none-any.whl").unlink()
    return env


def _script_env(
    env: dict[str, str], target: Path, requirements: str, delay: int = 1, max_delay: int = 2
) -> dict[str, str]:
    return {
        **env,
        "TARGET": str(target),
        "REQUIREMENTS": requirements,
        "RETRY_DELAY": str(delay),
        "RETRY_MAX_DELAY": str(max_delay),
        "TERMINATION_LOG": str(target.parent / "termination-log"),
    }


def _run(env: dict[str, str], target: Path, requirements: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["/bin/sh", "-c", INSTALL_SCRIPT],
        env=_script_env(env, target, requirements),
        capture_output=True,
        text=True,
        timeout=120,
    )


class _Failing:
    """The script started in the background, its stderr read line by line."""

    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            ["/bin/sh", "-c", INSTALL_SCRIPT],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[tuple[float, str]] = []

    def until(self, text: str, timeout: float = 120) -> float:
        """Read stderr until a line contains `text`; when it came."""
        assert self.proc.stderr is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                pytest.fail(f"the script ended ({self.proc.wait()}) before {text!r}")
            self.lines.append((time.monotonic(), line))
            if text in line:
                return self.lines[-1][0]
        pytest.fail(f"no {text!r} within {timeout}s")

    def stop(self) -> int:
        self.proc.terminate()
        try:
            return self.proc.wait(timeout=10)
        finally:
            self.proc.kill()
            self.proc.wait()

    def text(self) -> str:
        return "".join(line for _, line in self.lines)


def test_installs_once_into_the_target(image: dict[str, str], tmp_path: Path) -> None:
    target = tmp_path / "shared" / "python-packages" / "abc"
    first = _run(image, target, "extra==0.1")
    assert first.returncode == 0, first.stderr
    assert (target / ".complete").exists()
    assert (target / "site-packages" / "extra" / "__init__.py").exists()
    # The virtualenv JupyterLab's container is pointed at, by its real path.
    assert (target / PACKAGES_VENV / "pyvenv.cfg").is_file()
    assert (target / "site-packages").resolve().is_relative_to(target / PACKAGES_VENV)
    assert not list(target.parent.glob("*.tmp.*"))
    second = _run(image, target, "extra==0.1")
    assert second.returncode == 0 and "already in" in second.stdout


def test_only_what_the_image_lacks_lands_on_pythonpath(
    image: dict[str, str], tmp_path: Path
) -> None:
    target = tmp_path / "pkgs"
    result = _run(image, target, "needsrayish==0.1\nneedstorchy==0.1")
    assert result.returncode == 0, result.stderr
    installed = {p.name for p in (target / "site-packages").iterdir()}
    assert {"needsrayish", "needstorchy"} <= installed
    assert "rayish" not in installed and "torchy" not in installed


def test_never_replaces_what_the_image_ships(image: dict[str, str], tmp_path: Path) -> None:
    """A package set that conflicts with the image never installs: the script keeps retrying
    (never failing the container, which would fail the head pod), ends promptly on SIGTERM
    (the pod deleted when a new package set replaces it) and leaves nothing half-installed."""
    target = tmp_path / "pkgs"
    script = _Failing(_script_env(image, target, "rayish==2.0", delay=60, max_delay=60))
    script.until("attempt 1 failed")
    assert "rayish" in script.text()
    assert script.proc.poll() is None  # still running: the init container has not failed
    stopped = time.monotonic()
    assert script.stop() == 143
    assert time.monotonic() - stopped < 5  # not after the 60 s backoff
    assert not target.exists()
    # No half-installed directory left behind; the termination message says why it waited.
    assert [p.name for p in tmp_path.iterdir()] == ["termination-log"]
    message = (tmp_path / "termination-log").read_text()
    assert message.startswith("shared packages: attempt 1 failed (exit 1), retrying in 60s;")
    assert "Fix ray.sharedPackages" in message


def test_retries_back_off_exponentially_to_the_cap(image: dict[str, str], tmp_path: Path) -> None:
    target = tmp_path / "pkgs"
    script = _Failing(_script_env(image, target, "nosuchpackage==1.0", delay=1, max_delay=2))
    try:
        times = [script.until(f"attempt {n} failed") for n in (1, 2, 3)]
    finally:
        script.stop()
    # 1 s, then 2 s (plus pip's own time for each attempt), then 4 s capped at 2 s.
    assert times[1] - times[0] >= 1 and times[2] - times[1] >= 2, times
    said = [line for _, line in script.lines if "attempt" in line]
    assert [line.split("retrying in ")[1].split(";")[0] for line in said] == ["1s", "2s", "2s"]


def test_a_transient_failure_heals_in_place(image: dict[str, str], tmp_path: Path) -> None:
    """The index missing the package (or unreachable) at first: the next attempt installs it,
    in the same container, and the script succeeds."""
    late = tmp_path / "late-index"
    late.mkdir()
    env = {**image, "PIP_FIND_LINKS": str(late)}
    target = tmp_path / "shared" / "pkgs"
    target.parent.mkdir()
    script = _Failing(_script_env(env, target, "extra==0.1", delay=2, max_delay=2))
    try:
        script.until("attempt 1 failed")
        shutil.copy(Path(image["PIP_FIND_LINKS"]) / "extra-0.1-py3-none-any.whl", late)
        assert script.proc.wait(timeout=120) == 0
    finally:
        if script.proc.poll() is None:
            script.stop()
    assert (target / ".complete").exists()
    assert (target / "site-packages" / "extra" / "__init__.py").exists()
    assert not any("attempt 2 failed" in line for _, line in script.lines)
