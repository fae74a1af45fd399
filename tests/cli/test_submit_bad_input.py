"""`ray-platform submit` given what it must refuse: one line, the documented exit code, and
nothing in the bucket (a real MinIO, tests/cli/conftest.py's `stores`)."""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cli import package
from cli.errors import Exit
from cli.plan import entry_script
from tests.cli.conftest import Stores, Submit, closed_port, objects, write_outputs

ENTRY = ["python", "main.py"]


def _project(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "main.py").write_text("print('hi')\n")
    (root / "lib").mkdir()
    (root / "lib" / "util.py").write_text("U = 1\n")
    return root


def _submit(
    run_submit: Submit, stores: Stores, tmp_path: Path, root: Path, entry: list[str] = ENTRY
) -> tuple[int, list[str], str, dict[str, object]]:
    """Submit `root` to a prefix of its own in MinIO (the dashboard a closed port): the exit
    code, the error lines, stderr, and what the prefix holds afterwards."""
    prefix = f"bad/{tmp_path.name}"
    outputs = write_outputs(tmp_path / "o.json", bucketUri=f"s3://{stores.s3.bucket}/{prefix}")
    env = {
        **stores.env(),
        "RAY_ADDRESS": f"http://127.0.0.1:{closed_port()}",
        "RAY_AUTH_TOKEN": "t" * 32,
    }
    r = run_submit(["--outputs", str(outputs), "--working-dir", str(root), "--", *entry], env)
    return r.code, r.error_lines, r.err, objects(stores.s3, prefix)


def test_a_good_directory_reaches_the_bucket(
    tmp_path: Path, stores: Stores, run_submit: Submit
) -> None:
    """The control for every refusal below: the same set-up uploads (then cannot reach the
    dashboard), so an empty prefix there means the refusal kept the zip out."""
    code, lines, _, held = _submit(run_submit, stores, tmp_path, _project(tmp_path / "proj"))
    assert code == Exit.CLUSTER, lines
    assert len(held) == 1 and next(iter(held)).endswith(".zip")


def _outside_file(root: Path) -> None:
    secret = root.parent / "outside" / "credentials"
    secret.parent.mkdir()
    secret.write_text("aws_secret_access_key = nope")
    (root / "creds").symlink_to(secret)


def _outside_dir(root: Path) -> None:
    (root.parent / "elsewhere").mkdir()
    (root / "lib" / "data").symlink_to(root.parent / "elsewhere")


def _dangling(root: Path) -> None:
    (root / "model.py").symlink_to(root / "gone.py")


def _fifo(root: Path) -> None:
    os.mkfifo(root / "lib" / "pipe")


def _socket(root: Path) -> None:
    # Bound by a relative name: a unix socket's path must fit 108 bytes, tmp_path may not.
    cwd = os.getcwd()
    os.chdir(root)
    try:
        sock = socket.socket(socket.AF_UNIX)
        sock.bind("agent.sock")
        sock.close()
    finally:
        os.chdir(cwd)


def _not_utf8(root: Path) -> None:
    with open(os.path.join(os.fsencode(root / "lib"), b"caf\xe9.py"), "wb") as f:
        f.write(b"X = 1\n")


def _unreadable_dir(root: Path) -> None:
    (root / "private").mkdir()
    (root / "private" / "key.txt").write_text("k")
    (root / "private").chmod(0)


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (_outside_file, "creds is a symlink out of the working directory (to "),
        (_outside_dir, "lib/data is a symlink out of the working directory (to "),
        (_dangling, "model.py is a symlink to "),
        (_fifo, "lib/pipe is a FIFO (named pipe), which a zip cannot hold"),
        (_socket, "agent.sock is a socket, which a zip cannot hold"),
        (_not_utf8, "b'lib/caf\\xe9.py' is not a UTF-8 name"),
        (_unreadable_dir, "private cannot be read (Permission denied)"),
    ],
    ids=lambda v: getattr(v, "__name__", "")[1:] or None,
)
def test_what_a_zip_must_not_carry_is_refused(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    stores: Stores,
    run_submit: Submit,
    make: Callable[[Path], None],
    expected: str,
) -> None:
    root = _project(tmp_path / "proj")
    make(root)
    if make is _unreadable_dir and os.access(root / "private", os.R_OK):
        # Root reads a directory whatever its mode (and CI runs as root): the kernel's refusal
        # is played for that one directory, where os.walk lists it, so the path is still run.
        listing = os.scandir
        private = str(root / "private")

        def refusing(path: Any = ".") -> Any:
            if not isinstance(path, int) and os.fsdecode(path) == private:
                raise PermissionError(13, "Permission denied", private)
            return listing(path)

        monkeypatch.setattr(os, "scandir", refusing)
    try:
        code, lines, err, held = _submit(run_submit, stores, tmp_path, root)
    finally:
        if make is _unreadable_dir:
            (root / "private").chmod(0o755)  # so pytest can remove tmp_path
    assert code == Exit.WORKING_DIR, err
    assert len(lines) == 1, err
    assert lines[0].startswith(f"ray-platform submit: working directory {root.resolve()}: ")
    assert expected in lines[0]
    assert lines[0].endswith("--exclude (or .gitignore); nothing was uploaded")
    assert "uploading" not in err
    assert held == {}


def test_a_name_that_would_break_the_line_is_shown_as_bytes() -> None:
    assert package.shown("lib/util.py") == "lib/util.py"
    assert package.shown("two\nlines.py") == "b'two\\nlines.py'"
    assert package.shown(os.fsdecode(b"caf\xe9.py")) == "b'caf\\xe9.py'"


def test_an_excluded_special_file_is_no_bar(tmp_path: Path) -> None:
    """What .gitignore or --exclude leaves out is never looked at."""
    root = _project(tmp_path / "proj")
    os.mkfifo(root / "pipe")
    (root / "creds").symlink_to("/etc/hostname")
    (root / ".gitignore").write_text("pipe\n")
    packed = [rel for rel, _, _ in package.collect(root, ["creds"])]
    assert packed == [".gitignore", "lib/util.py", "main.py"]


def test_a_device_is_refused(tmp_path: Path, stores: Stores, run_submit: Submit) -> None:
    root = _project(tmp_path / "proj")
    try:
        os.mknod(root / "null", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("no CAP_MKNOD to make a device node")
    code, lines, _, held = _submit(run_submit, stores, tmp_path, root)
    assert code == Exit.WORKING_DIR and len(lines) == 1
    assert "null is a character device, which a zip cannot hold" in lines[0]
    assert held == {}


def test_a_200_mib_file_is_refused_before_any_upload(
    tmp_path: Path, stores: Stores, run_submit: Submit
) -> None:
    root = _project(tmp_path / "proj")
    with (root / "data.bin").open("wb") as f:
        f.truncate(200 * package.MIB)  # sparse: the size is checked from the listing, unread
    code, lines, err, held = _submit(run_submit, stores, tmp_path, root)
    assert code == Exit.WORKING_DIR, err
    assert len(lines) == 1
    assert (
        f"{root.resolve()} holds 200.0 MiB, over the 100.0 MiB limit of ray-platform submit "
        "(--max-size; the default is Ray's own upload limit); biggest: data.bin (200.0 MiB)"
    ) in lines[0]
    assert lines[0].endswith("nothing was uploaded")
    assert held == {}


@pytest.mark.parametrize("ignored", [False, True], ids=["empty", "all-ignored"])
def test_an_empty_directory_is_refused(
    tmp_path: Path, stores: Stores, run_submit: Submit, ignored: bool
) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    if ignored:
        (root / "big.ckpt").write_text("x")
        (root / ".gitignore").write_text("*\n")
    code, lines, _, held = _submit(run_submit, stores, tmp_path, root)
    assert code == Exit.WORKING_DIR
    assert lines == [
        f"ray-platform submit: working directory {root.resolve()} has no files to ship (it is "
        "empty, or .gitignore, --exclude and the stack's excludes leave nothing); nothing was "
        "uploaded"
    ]
    assert held == {}


def test_a_missing_working_directory_is_refused(
    tmp_path: Path, stores: Stores, run_submit: Submit
) -> None:
    code, lines, _, _ = _submit(run_submit, stores, tmp_path, tmp_path / "nope")
    assert code == Exit.WORKING_DIR
    assert lines == [f"ray-platform submit: working directory {tmp_path / 'nope'} does not exist"]


@pytest.mark.parametrize(
    ("entry", "why"),
    [
        (["python", "job.py"], "job.py is not in the working directory"),
        (["python3.11", "-u", "-W", "ignore", "lib/job.py", "--lr", "1"], "lib/job.py is not in"),
        (["bash", "-e", "run.sh"], "run.sh is not in the working directory"),
        (["./train.sh", "--fast"], "./train.sh is not in the working directory"),
        (["python", "../main.py"], "../main.py is not in the working directory"),
        (["python", "secret.py"], "secret.py is in "),
    ],
)
def test_an_entrypoint_script_that_will_not_be_shipped_is_refused(
    tmp_path: Path, stores: Stores, run_submit: Submit, entry: list[str], why: str
) -> None:
    root = _project(tmp_path / "proj")
    (root / "secret.py").write_text("")
    (root / ".gitignore").write_text("secret.py\n")
    code, lines, err, held = _submit(run_submit, stores, tmp_path, root, entry)
    assert code == Exit.USAGE, err
    assert len(lines) == 1
    assert f"ray-platform submit: the entrypoint's script {why}" in lines[0]
    assert lines[0].endswith("so the job could not run it; nothing was uploaded")
    if "is in" in why:
        assert "excluded from the zip (.gitignore, --exclude, stack excludes)" in lines[0]
    assert held == {}


@pytest.mark.parametrize(
    ("entry", "script"),
    [
        (["python", "main.py"], "main.py"),
        (["/usr/bin/python3", "-X", "dev", "-O", "main.py"], "main.py"),
        (["sh", "-o", "errexit", "run.sh"], "run.sh"),
        (["./run.sh"], "./run.sh"),
        (["python", "-m", "pkg.train"], None),
        (["python", "-c", "print(1)"], None),
        (["python", "/opt/app/serve.py"], None),
        (["torchrun", "train.py"], None),
        (["echo", "hi"], None),
    ],
)
def test_entry_script(entry: list[str], script: str | None) -> None:
    assert entry_script(entry) == script
