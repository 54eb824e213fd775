"""Ctrl-C in a parallel batch and two runs on one output folder, tested the way they fail.

``stemqd process ... --jobs 2`` runs in a subprocess in its own process group, as in a
terminal; SIGINT goes to the whole group (what Ctrl-C does) while the workers are in the
middle of a stack (in some runs twice, the second during the clean-up). The run must end
with exit code 130 within a generous bound (a correctness bound of the feature, not a speed
benchmark), leave no process of its group behind, print no traceback, and write what
finished with the hint to rerun. A second run on the same ``--out`` is refused while the
first holds the lock.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stemqd.io import write_stack_tiff
from stemqd.simulation.synthetic import perovskite_dot

ROOT = Path(__file__).resolve().parents[1]
PIXEL_A = 0.3
#: Bound on Ctrl-C to exit, s: the issue's 10 s, a liveness requirement, not a speed claim
#: (measured: 0.5-0.6 s in 20 of 20 tries, beside the test suite).
EXIT_BOUND_S = 10.0
#: Stage labels of the progress bar that mean a worker is inside a stack's analysis.
MID_STACK = re.compile(r"aligning frames|removing background|denoising|deconvolving|fitting")

pytestmark = pytest.mark.skipif(
    not hasattr(os, "killpg") or not Path("/proc").is_dir(), reason="needs POSIX process groups"
)


@pytest.fixture(scope="module")
def stacks(tmp_path_factory):
    """Four dots big enough (320 px, 8 cells) that a stack takes several seconds."""
    folder = tmp_path_factory.mktemp("stacks")
    for k in range(4):
        frames, _ = perovskite_dot(
            (320, 320),
            pixel_size_A=PIXEL_A,
            edge_cells=8,
            n_frames=2,
            dose=400.0,
            rotation_deg=2.0,
            drift_px=0.5,
            seed=k,
        )
        write_stack_tiff(folder / f"dot{k}.tif", frames, PIXEL_A, voltage_kv=300)
    return folder


def _start(*args) -> tuple[subprocess.Popen, list[str]]:
    """``python cli.py ARGS`` in a new session (own process group); stderr collected."""
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "cli.py"), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    err: list[str] = []

    def read():
        for chunk in iter(lambda: proc.stderr.read(256), ""):
            err.append(chunk)

    threading.Thread(target=read, daemon=True).start()
    return proc, err


def _group_members(pgid: int) -> list[int]:
    """Pids (not zombies) whose process group is `pgid`, from /proc."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            pids.append(int(stat.parent.name))
    return pids


def _wait_for(condition, timeout_s: float, step_s: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step_s)
    return condition()


def interrupt_once(
    stacks: Path,
    out: Path,
    delay_s: float,
    check_lock: bool = False,
    when=MID_STACK,
    twice: bool = False,
) -> pd.DataFrame:
    """Start a ``--jobs 2`` batch, Ctrl-C it `delay_s` after stderr matches `when`.

    With `twice`, a second Ctrl-C follows 0.3 s later, during the clean-up. Returns the
    rows of ``summary.csv`` written after the interrupt.
    """
    proc, err = _start("process", stacks, "--out", out, "--jobs", "2")
    pgid = proc.pid
    try:
        assert _wait_for(lambda: when.search("".join(err)) or proc.poll() is not None, 300)
        assert proc.poll() is None, "".join(err)
        if check_lock:
            second = subprocess.run(
                [sys.executable, str(ROOT / "cli.py"), "process", stacks, "--out", out, "-q"],
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert second.returncode == 2, second.stderr
            assert "another stemqd run is writing this folder" in second.stderr
            assert f"pid {proc.pid} on " in second.stderr and "Traceback" not in second.stderr
        time.sleep(delay_s)
        os.killpg(pgid, signal.SIGINT)
        t0 = time.monotonic()
        if twice:
            time.sleep(0.3)
            if proc.poll() is None:
                os.killpg(pgid, signal.SIGINT)
        try:
            rc = proc.wait(timeout=EXIT_BOUND_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"no exit {EXIT_BOUND_S:.0f} s after Ctrl-C:\n{''.join(err)[-2000:]}")
        took = time.monotonic() - t0
        # Stragglers would be orphans; the resource tracker may need a moment to see EOF.
        left = not _wait_for(lambda: not _group_members(pgid), 10.0)
    finally:
        members = _group_members(pgid)
        if members:
            os.killpg(pgid, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = "".join(err)
    assert rc == 130, f"exit {rc} after {took:.1f} s:\n{text[-2000:]}"
    assert not left, f"processes left in the group after exit: {members}"
    assert "Traceback" not in text and "Error" not in text.replace("failed=", ""), text[-2000:]
    assert "rerun the same command to resume" in text
    run = json.loads((out / "run.json").read_text())
    assert run["interrupted"] is True
    finished = pd.read_csv(out / "summary.csv")
    assert len(finished) + len(run["not_finished"]) == 4
    assert set(finished["status"]) <= {"processed", "skipped"}
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no lock, no half result
    print(f"exit {took:.1f} s after Ctrl-C")  # the target is 10 s: read with -s
    return finished


def test_ctrl_c_ends_a_parallel_batch(tmp_path, stacks):
    rng = np.random.default_rng(1)
    for k in range(2):
        interrupt_once(stacks, tmp_path / f"out{k}", rng.uniform(0.0, 1.5), twice=k == 1)


@pytest.mark.slow
def test_ctrl_c_ends_a_parallel_batch_every_time(tmp_path, stacks):
    rng = np.random.default_rng(2)
    for k in range(20):  # interrupts early and late in the stacks, and between them
        interrupt_once(
            stacks, tmp_path / f"out{k}", rng.uniform(0.0, 8.0), check_lock=k == 0, twice=k % 2
        )


@pytest.mark.slow
def test_rerun_after_ctrl_c_resumes(tmp_path, stacks):
    out = tmp_path / "out"
    finished = interrupt_once(stacks, out, 0.0, when=re.compile(r"done=[1-9]"))
    assert len(finished) >= 1
    again = subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), "process", stacks, "--out", out, "-q"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert again.returncode == 0, again.stderr
    rows = pd.read_csv(out / "summary.csv").set_index("name")
    assert list(rows.index) == [f"dot{k}" for k in range(4)]
    assert (rows.loc[finished["name"], "status"] == "skipped").all()  # reused, not redone
    assert json.loads((out / "run.json").read_text())["interrupted"] is False
