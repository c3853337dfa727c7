"""Nothing a user has is destroyed: output files are replaced whole or not at all, an output
that is an input is refused, `--init` is never read from a file by accident, and the
children a command starts (SymPy's, Graphviz's dot) die with it."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from backprop_cli.core.errors import BackpropError
from backprop_cli.io import files
from tests.conftest import run

HERE = Path(__file__).parent.parent


def backprop(args: list[str], cwd: Path, file_limit: int | None = None, **kw):
    """`python -m backprop_cli ARGS` in a fresh process, optionally under `ulimit -f`."""

    def limit() -> None:
        if file_limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, file_limit))

    env = {**os.environ, "PYTHONPATH": str(HERE), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "backprop_cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        preexec_fn=limit,
        timeout=120,
        **kw,
    )


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".part"))


# ---- atomic replacement -------------------------------------------------------------


def test_write_atomically_replaces_the_file_and_keeps_its_mode(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")
    target.chmod(0o640)
    files.write_atomically(str(target), "new\n")
    assert target.read_text() == "new\n"
    assert target.stat().st_mode & 0o777 == 0o640
    assert leftovers(tmp_path) == []


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")
    with pytest.raises(BackpropError, match="cannot write"), files.replacing(str(target)) as t:
        Path(t).write_text("half")
        raise OSError(28, "No space left on device")
    assert target.read_text() == "old"
    assert leftovers(tmp_path) == []


def test_a_new_file_gets_the_umask_mode(tmp_path):
    target = tmp_path / "new.json"
    files.write_atomically(str(target), "{}")
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_save_under_a_file_size_limit_keeps_the_old_parameters(tmp_path):
    old = '{\n  "w": 3.0\n}\n'
    (tmp_path / "params.json").write_text(old)
    done = backprop(["train", "linear", "--save", "params.json"], tmp_path, file_limit=20)
    assert done.returncode == 2, done.stderr
    assert "cannot write params.json" in done.stderr and "Traceback" not in done.stderr
    assert (tmp_path / "params.json").read_text() == old
    assert leftovers(tmp_path) == []


def test_save_replaces_the_file_whole(tmp_path):
    (tmp_path / "params.json").write_text('{"w": 3.0}')
    inode = (tmp_path / "params.json").stat().st_ino
    assert (
        run("train", "linear", "--epochs", "2", "--save", str(tmp_path / "params.json")).code == 0
    )
    assert set(json.loads((tmp_path / "params.json").read_text())) == {"w"}
    assert (tmp_path / "params.json").stat().st_ino != inode  # a new file moved into place
    assert leftovers(tmp_path) == []


def test_plot_under_a_file_size_limit_keeps_the_old_plot(tmp_path):
    pytest.importorskip("matplotlib")
    (tmp_path / "loss.png").write_bytes(b"old picture")
    args = ["train", "linear", "--epochs", "3", "--plot", "loss.png"]
    done = backprop(args, tmp_path, file_limit=200)
    assert done.returncode == 2, done.stderr
    assert (tmp_path / "loss.png").read_bytes() == b"old picture"
    assert leftovers(tmp_path) == []


def needs_dot() -> None:
    import shutil

    if shutil.which("dot") is None:
        if os.environ.get("BACKPROP_REQUIRE_DOT"):
            pytest.fail("Graphviz's dot is not installed")
        pytest.skip("Graphviz's dot is not installed")


def test_graph_output_under_a_file_size_limit_keeps_the_old_picture(tmp_path):
    needs_dot()
    (tmp_path / "g.svg").write_text("<svg>old</svg>")
    args = ["graph", "(x+y)*z", "x=-2", "y=5", "z=-4", "-o", "g.svg"]
    done = backprop(args, tmp_path, file_limit=100)
    assert done.returncode == 2, done.stderr
    assert (tmp_path / "g.svg").read_text() == "<svg>old</svg>"
    assert leftovers(tmp_path) == []
    done = backprop(args, tmp_path)
    assert done.returncode == 0 and "<svg" in (tmp_path / "g.svg").read_text()
    assert "<svg>old</svg>" not in (tmp_path / "g.svg").read_text()


# ---- an output that is an input ----------------------------------------------------


def test_save_onto_the_training_data_is_refused(tmp_path):
    data = tmp_path / "d.csv"
    data.write_text("x,y\n1,2\n2,4\n")
    r = run("train", "linear", "--data", str(data), "--save", str(data))
    assert r.code == 2
    assert "--save" in r.stderr and "--data" in r.stderr and "destroy" in r.stderr
    assert data.read_text() == "x,y\n1,2\n2,4\n"


def test_the_same_file_under_another_name_is_refused(tmp_path):
    data = tmp_path / "d.csv"
    data.write_text("x,y\n1,2\n2,4\n")
    (tmp_path / "link.csv").symlink_to(data)
    os.link(data, tmp_path / "hard.csv")
    for other in ("link.csv", "hard.csv"):
        r = run("train", "linear", "--data", str(data), "--save", str(tmp_path / other))
        assert r.code == 2, other
    assert data.read_text() == "x,y\n1,2\n2,4\n"


def test_init_file_as_save_target_is_refused(tmp_path):
    params = tmp_path / "p.json"
    params.write_text('{"w": 1.5}')
    r = run("train", "linear", "--init", str(params), "--save", str(params))
    assert r.code == 2 and "--init" in r.stderr
    assert params.read_text() == '{"w": 1.5}'
    # the usual round trip into another file works
    assert (
        run("train", "linear", "--init", str(params), "--save", str(tmp_path / "q.json")).code == 0
    )


def test_a_picture_onto_the_program_file_is_refused(tmp_path):
    program = tmp_path / "prog.svg"
    program.write_text("(x+y)*z")
    r = run("graph", "--file", str(program), "x=1", "y=2", "z=3", "-o", str(program))
    assert r.code == 2 and "destroy" in r.stderr
    r = run("grad", "--file", str(program), "x=1", "y=2", "z=3", "--graph", str(program))
    assert r.code == 2 and "destroy" in r.stderr
    assert program.read_text() == "(x+y)*z"


# ---- --init is unambiguous ------------------------------------------------------------


def test_init_with_an_equals_sign_is_never_read_from_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "w=5").write_text('{"w": 5}')
    r = run("train", "linear", "--epochs", "1", "--init", "w=1", "--format", "jsonl")
    assert r.code == 0, r.stderr
    # w = 1 is the course's start, so the first epoch's loss is the course's
    assert json.loads(r.stdout.splitlines()[0])["loss"] == pytest.approx(7.315943717956543)
    r = run("train", "linear", "--epochs", "1", "--init", "./w=5", "--format", "jsonl")
    assert r.code == 0, r.stderr
    assert json.loads(r.stdout.splitlines()[0])["loss"] != pytest.approx(7.315943717956543)


def test_init_is_file_rule():
    assert not files_rule("w=1") and not files_rule("w=1,b=0") and not files_rule("w=[1,2]")
    assert files_rule("params.json") and files_rule("p") and files_rule("./w=1")
    assert files_rule("/tmp/w=1") and files_rule("w=1.json")


def files_rule(text: str) -> bool:
    from backprop_cli.io.inputs import init_is_file

    return init_is_file(text)


# ---- children die with their parent ----------------------------------------------------


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def wait_until(condition, seconds: float = 20.0) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's prctl")


@linux_only
def test_sympys_early_child_dies_when_its_parent_is_killed(tmp_path):
    script = textwrap.dedent(
        """
        import sys, time
        from backprop_cli.checks import sandbox
        sandbox.prestart()
        print(sandbox._spare[0], flush=True)
        time.sleep(60)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(HERE)}
    parent = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        child = int(parent.stdout.readline())
        assert alive(child)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        assert wait_until(lambda: not alive(child)), "SymPy's child outlived its parent"
    finally:
        parent.kill()


@linux_only
def test_graphviz_dies_when_graph_is_terminated_and_writes_nothing(tmp_path):
    fake = tmp_path / "bin"
    fake.mkdir()
    pidfile = tmp_path / "dot.pid"
    (fake / "dot").write_text(f'#!/bin/sh\necho $$ > "{pidfile}"\nexec sleep 60\n')
    (fake / "dot").chmod(0o755)
    env = {
        **os.environ,
        "PYTHONPATH": str(HERE),
        "PATH": f"{fake}{os.pathsep}{os.environ['PATH']}",
    }
    parent = subprocess.Popen(
        [sys.executable, "-m", "backprop_cli", "graph", "x*y", "x=1", "y=2", "-o", "g.svg"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert wait_until(lambda: pidfile.exists() and pidfile.read_text().strip() != "")
        dot = int(pidfile.read_text())
        parent.send_signal(signal.SIGTERM)
        parent.wait(10)
        assert wait_until(lambda: not alive(dot)), "dot outlived backprop"
        assert not (tmp_path / "g.svg").exists()
    finally:
        parent.kill()


# ---- what sits at the path is respected: links, devices, permissions, owners ---------


def test_through_a_symlink_the_linked_file_gets_the_new_content(tmp_path):
    (tmp_path / "other").mkdir()
    real = tmp_path / "other" / "real.json"
    real.write_text('{"w": 9}')
    (tmp_path / "link.json").symlink_to(real)
    assert run("train", "linear", "--epochs", "1", "--save", str(tmp_path / "link.json")).code == 0
    assert (tmp_path / "link.json").is_symlink()
    assert json.loads(real.read_text()) != {"w": 9}
    assert leftovers(tmp_path) == [] and leftovers(tmp_path / "other") == []


def test_a_hard_linked_file_keeps_its_links(tmp_path):
    (tmp_path / "a.json").write_text("{}")
    os.link(tmp_path / "a.json", tmp_path / "b.json")
    assert run("train", "linear", "--epochs", "1", "--save", str(tmp_path / "a.json")).code == 0
    assert (tmp_path / "a.json").stat().st_nlink == 2
    assert json.loads((tmp_path / "b.json").read_text()).keys() == {"w"}


def test_a_device_is_written_into_never_replaced(tmp_path):
    import stat

    before = os.stat("/dev/null")
    done = backprop(["train", "linear", "--epochs", "1", "--save", "/dev/null"], tmp_path)
    assert done.returncode == 0, done.stderr
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and after.st_ino == before.st_ino
    done = backprop(["train", "linear", "--epochs", "1", "--save", "/dev/stdout"], tmp_path)
    assert done.returncode == 0 and '"w"' in done.stdout
    assert os.path.islink("/dev/stdout")


def test_a_long_file_name_that_the_system_allows_works(tmp_path):
    name = "p" * 245 + ".json"
    assert run("train", "linear", "--epochs", "1", "--save", str(tmp_path / name)).code == 0
    assert (tmp_path / name).exists() and leftovers(tmp_path) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the file to another owner")
def test_the_old_files_owner_and_mode_are_kept(tmp_path):
    target = tmp_path / "own.json"
    target.write_text("{}")
    target.chmod(0o604)
    os.chown(target, 65534, 65534)
    assert run("train", "linear", "--epochs", "1", "--save", str(target)).code == 0
    info = target.stat()
    assert (info.st_uid, info.st_gid, info.st_mode & 0o777) == (65534, 65534, 0o604)


def without_privileges() -> list[str]:
    import shutil

    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("root without setpriv cannot drop the right to write any file")
    return ["setpriv", "--bounding-set", "-all", "--inh-caps", "-all"]


def test_a_write_protected_file_is_refused_before_any_work(tmp_path):
    target = tmp_path / "ro.json"
    target.write_text("keep")
    target.chmod(0o444)
    done = subprocess.run(
        [*without_privileges(), sys.executable, "-m", "backprop_cli", "train", "linear",
         "--save", str(target)],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(HERE)}, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2 and "Permission denied" in done.stderr
    assert "progress" not in done.stdout  # refused before training
    assert target.read_text() == "keep"


def test_a_writable_file_in_a_read_only_folder_is_written_in_place(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    (folder / "p.json").write_text("{}")
    folder.chmod(0o555)
    try:
        done = subprocess.run(
            [*without_privileges(), sys.executable, "-m", "backprop_cli", "train", "linear",
             "--epochs", "1", "--save", str(folder / "p.json")],
            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(HERE)},
            timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert json.loads((folder / "p.json").read_text()).keys() == {"w"}
    finally:
        folder.chmod(0o755)


def test_two_outputs_naming_one_file_are_refused(tmp_path):
    target = str(tmp_path / "same.svg")
    r = run("train", "linear", "--save", target, "--plot", target)
    assert r.code == 2 and "both write" in r.stderr


def test_an_input_on_stdin_is_an_input_too(tmp_path):
    data = tmp_path / "d.csv"
    data.write_text("x,y\n1,2\n")
    with open(data) as stdin:
        done = backprop(
            ["train", "linear", "--data", "-", "--save", "d.csv"], tmp_path, stdin=stdin
        )
    assert done.returncode == 2 and "stdin" in done.stderr
    assert data.read_text() == "x,y\n1,2\n"
