"""Batch machinery (stemqd.batch) with a small injected ``process`` function.

The stand-in process measures the mean of each half of the averaged frame, so its numbers
are known exactly; the full pipeline is exercised by tests/test_cli_process.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from stemqd.batch import (
    LOCK_NAME,
    BatchInterrupted,
    collect_results,
    compare_batches,
    discover_inputs,
    lock_output,
    read_run,
    run_batch,
    stack_names,
    to_jsonable,
)
from stemqd.config import config_hash, load_config
from stemqd.errors import InputError
from stemqd.io import write_stack_tiff


def fake_process(stack, config):
    """Ratio = mean of the left half / mean of the right half of the averaged frame."""
    if "boom" in Path(stack.path).name:
        raise ZeroDivisionError("simulated bug")
    img = np.asarray(stack.frames).mean(axis=0)
    half = img.shape[1] // 2
    left, right = img[:, :half].mean(), img[:, half:].mean()
    columns = pd.DataFrame(
        {
            "x_px": [10.0, 20.0, 30.0],
            "y_px": [10.0, 20.0, 30.0],
            "site": ["A", "BX", "BX"],
            "label": ["Cs", "PbBr", "PbBr"],
            "flag": ["", "", "fit failed"],
            "intensity": [left, right, np.nan],
        }
    )
    summary = {
        "pixel_size_A": stack.pixel_size_A,
        "ratio": {
            "numerator": "Cs",
            "denominator": "PbBr",
            "ratio": left / right,
            "ci_low": 0.9 * left / right,
            "ci_high": 1.1 * left / right,
            "stderr": np.float64(np.nan),
            "n_numerator": np.int64(1),
            "n_denominator": 2,
            "confidence": 0.95,
        },
        "dot": {"edge_lengths_nm": [1.0, 2.0], "area_nm2": 2.0},
        "columns": {"total": 3, "used": 2},
        "lattice": {"a_A": 5.87, "b_A": 5.86},
        "spacing": {"Cs": {"spacing_a_nm_mean": 0.587, "spacing_b_nm_mean": 0.586}},
        "input": {"path": stack.path, "sha256": stack.sha256},
        "config_hash": config_hash(config),
    }
    return SimpleNamespace(
        columns=columns,
        summary=summary,
        images={"average": img, "final": img},
        extra={"psf": np.ones((3, 3)) / 9},
    )


def fake_render(analysis, folder, name):
    (Path(folder) / "overlay.png").write_bytes(b"\x89PNG fake " + name.encode())


def interrupting_render(analysis, folder, name):
    (Path(folder) / "overlay.png").write_bytes(b"partial")
    raise KeyboardInterrupt


def _stack(path, left=2.0, right=4.0, n=2, size=48, seed=0):
    rng = np.random.default_rng(seed)
    frames = np.empty((n, size, size), np.float32)
    frames[:, :, : size // 2] = left
    frames[:, :, size // 2 :] = right
    frames += rng.uniform(-1e-3, 1e-3, frames.shape).astype(np.float32)
    write_stack_tiff(path, frames, 0.3, voltage_kv=300, convergence_mrad=18)
    return path


@pytest.fixture
def good(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    return [_stack(d / "a.tif", 2, 4), _stack(d / "b.tif", 3, 4, seed=1)]


@pytest.fixture
def bad(tmp_path):
    d = tmp_path / "bad"
    d.mkdir()
    _stack(d / "full.tif")
    data = (d / "full.tif").read_bytes()
    (d / "truncated.tif").write_bytes(data[: len(data) // 2])
    (d / "full.tif").unlink()
    (d / "empty.tif").write_bytes(b"")
    (d / "text.tif").write_text("not an image\n")
    np.save(d / "line.npy", np.arange(100.0))
    frames = np.ones((2, 48, 48), np.float32)
    frames[1, 5, 7] = np.nan
    write_stack_tiff(d / "nanpix.tif", frames, 0.3)
    return d


CONFIG = load_config()


def test_discover_files_folders_globs(tmp_path, good):
    (tmp_path / "in" / "notes.txt").write_text("x")
    (tmp_path / "empty_dir").mkdir()
    paths, problems = discover_inputs(
        [
            str(good[0]),
            str(tmp_path / "in"),
            str(tmp_path / "in" / "*.tif"),
            str(tmp_path / "empty_dir"),
            str(tmp_path / "nothing*.dm4"),
            str(tmp_path / "missing.tif"),
        ]
    )
    assert [p.name for p in paths] == [
        "a.tif",
        "b.tif",
        "missing.tif",
    ]  # unique, notes.txt left out
    assert [p[0] for p in problems] == [str(tmp_path / "empty_dir"), str(tmp_path / "nothing*.dm4")]


def test_stack_names_are_unique():
    names = stack_names([Path("core/dot1.tif"), Path("shell/dot1.tif"), Path("x/dot2.dm4")])
    assert names == ["core__dot1", "shell__dot1", "dot2"]


def test_to_jsonable_gives_strict_json():
    obj = {
        "a": np.float32(1.5),
        "b": np.nan,
        "c": [np.int64(2), np.inf],
        "d": (1, None),
        "e": np.array([1.0, np.nan]),
        "f": Path("x/y"),
    }
    text = json.dumps(to_jsonable(obj), allow_nan=False)
    assert json.loads(text) == {
        "a": 1.5,
        "b": None,
        "c": [2, None],
        "d": [1, None],
        "e": [1.0, None],
        "f": "x/y",
    }


def test_results_and_summary(tmp_path, good):
    out = tmp_path / "out"
    rows = run_batch(
        [str(p) for p in good],
        out,
        CONFIG,
        process=fake_process,
        render=fake_render,
        save_intermediates=True,
        progress=False,
    )
    assert list(rows["status"]) == ["processed", "processed"]
    table = pd.read_csv(out / "summary.csv")
    assert list(table["name"]) == ["a", "b"]
    np.testing.assert_allclose(table["ratio"], [0.5, 0.75], rtol=1e-3)
    assert table["config_hash"].tolist() == [config_hash(CONFIG)] * 2
    assert table["spacing_a_nm_Cs"].tolist() == [0.587, 0.587]
    summary = json.loads((out / "a" / "summary.json").read_text())
    assert summary["ratio"]["stderr"] is None  # NaN -> null
    assert summary["run"]["name"] == "a"
    cols = pd.read_csv(out / "a" / "columns.csv")
    assert list(cols.columns[:2]) == ["x_px", "y_px"] and len(cols) == 3
    assert (out / "a" / "overlay.png").read_bytes().startswith(b"\x89PNG")
    inter = sorted(p.name for p in (out / "a" / "intermediates").iterdir())
    assert inter == ["00_average.tif", "01_final.tif", "psf.tif"]
    assert not (out / "failures.csv").exists()
    assert "config_hash" in (out / "config.toml").read_text()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary leftovers


def test_bad_inputs_are_isolated(tmp_path, good, bad):
    out = tmp_path / "out"
    lines = []
    boom = _stack(tmp_path / "in" / "boom.tif")
    rows = run_batch(
        [str(p) for p in good] + [str(bad), str(boom)],
        out,
        CONFIG,
        process=fake_process,
        progress=False,
        log=lines.append,
    )
    status = dict(zip(rows["name"], rows["status"]))
    assert status == {
        "a": "processed",
        "b": "processed",
        "empty": "failed",
        "line": "failed",
        "nanpix": "failed",
        "text": "failed",
        "truncated": "failed",
        "boom": "failed",
    }
    text = pd.read_csv(out / "summary.csv", dtype=str).set_index("name")
    # counts stay whole numbers beside the failed rows' blanks (not 1.0)
    assert text.loc["a", ["n_numerator", "n_denominator", "n_columns"]].tolist() == ["1", "2", "3"]
    failures = pd.read_csv(out / "failures.csv")
    assert list(failures.columns) == ["file", "name", "error_class", "message"]
    msg = dict(zip(failures["name"], failures["message"]))
    cls = dict(zip(failures["name"], failures["error_class"]))
    assert "truncated" in msg["truncated"] and "empty" in msg["empty"]
    assert "not a TIFF" in msg["text"] and "1-D" in msg["line"] and "non-finite" in msg["nanpix"]
    assert cls["boom"] == "ZeroDivisionError" and "error.log" in msg["boom"]
    log = (out / "boom" / "error.log").read_text()
    assert "Traceback" in log and "simulated bug" in log
    assert len(lines) == 6 and all("\n" not in line and "Traceback" not in line for line in lines)
    assert (out / "a" / "summary.json").is_file()


def test_resume_skips_and_force_redoes(tmp_path, good):
    out = tmp_path / "out"
    run_batch(good, out, CONFIG, process=fake_process, progress=False)
    before = {p: p.read_bytes() for p in out.glob("*/*")}
    mtimes = {p: p.stat().st_mtime_ns for p in before}
    rows = run_batch(good, out, CONFIG, process=fake_process, progress=False)
    assert set(rows["status"]) == {"skipped"}
    assert {p: p.read_bytes() for p in out.glob("*/*")} == before
    assert {p: p.stat().st_mtime_ns for p in before} == mtimes
    first = pd.read_csv(out / "summary.csv")
    np.testing.assert_allclose(first["ratio"], [0.5, 0.75], rtol=1e-3)

    rows = run_batch(good, out, CONFIG, process=fake_process, progress=False, force=True)
    assert set(rows["status"]) == {"processed"}
    # a changed config or a changed input is recomputed
    other = load_config(None, ["denoise.cycles=3"])
    assert set(run_batch(good, out, other, process=fake_process, progress=False)["status"]) == {
        "processed"
    }
    _stack(good[0], 1, 4)
    rows = run_batch(good, out, other, process=fake_process, progress=False)
    assert list(rows["status"]) == ["processed", "skipped"]
    assert rows["ratio"].iloc[0] == pytest.approx(0.25, rel=1e-3)


def test_interrupt_leaves_no_half_result(tmp_path, good):
    out = tmp_path / "out"
    run_batch(good[:1], out, CONFIG, process=fake_process, render=fake_render, progress=False)
    before = (out / "a" / "summary.json").read_bytes()
    with pytest.raises(KeyboardInterrupt):
        run_batch(
            good[:1],
            out,
            CONFIG,
            process=fake_process,
            render=interrupting_render,
            progress=False,
            force=True,
        )
    assert (out / "a" / "summary.json").read_bytes() == before  # the old result is intact
    assert (out / "a" / "overlay.png").read_bytes().startswith(b"\x89PNG")
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_process_pool_matches_serial(tmp_path, good, bad):
    serial = run_batch(
        good + [bad / "empty.tif"], tmp_path / "s", CONFIG, process=fake_process, progress=False
    )
    parallel = run_batch(
        good + [bad / "empty.tif"],
        tmp_path / "p",
        CONFIG,
        process=fake_process,
        jobs=2,
        progress=False,
    )
    cols = ["name", "status", "ratio", "ci_low", "ci_high", "error_class"]
    pd.testing.assert_frame_equal(serial[cols], parallel[cols])


def test_dask_local_cluster_matches_serial(tmp_path, good):
    distributed = pytest.importorskip("distributed")
    serial = run_batch(good, tmp_path / "s", CONFIG, process=fake_process, progress=False)
    with distributed.LocalCluster(
        n_workers=1, processes=False, threads_per_worker=1, dashboard_address=None
    ) as cluster:
        with distributed.Client(cluster) as client:
            dask = run_batch(
                good, tmp_path / "d", CONFIG, process=fake_process, progress=False, scheduler=client
            )
    cols = ["name", "status", "ratio", "ci_low", "ci_high"]
    pd.testing.assert_frame_equal(serial[cols], dask[cols])
    assert json.loads((tmp_path / "d" / "run.json").read_text())["executor"] == "dask"


def test_compare_batches(tmp_path):
    for group, ratios in {"core": [0.40, 0.41, 0.42], "shell": [0.50, 0.52, 0.55, 0.49]}.items():
        for k, r in enumerate(ratios):
            sub = tmp_path / group / f"dot{k}"
            sub.mkdir(parents=True)
            (sub / "summary.json").write_text(
                json.dumps(
                    {
                        "ratio": {
                            "numerator": "Cs",
                            "denominator": "PbBr",
                            "ratio": r,
                            "ci_low": r - 0.01,
                            "ci_high": r + 0.01,
                        },
                        "config_hash": "h",
                    }
                )
            )
    # a stale result of a stack that failed in the latest run is not used
    (tmp_path / "core" / "summary.csv").write_text(
        "name,status\ndot0,processed\ndot1,processed\ndot2,failed\n"
    )
    assert len(collect_results(tmp_path / "core")) == 2
    res = compare_batches(
        {"core": tmp_path / "core", "shell": tmp_path / "shell"}, permutations=999, bootstrap=999
    )
    g = res["groups"].set_index("group")
    assert g.loc["core", "n"] == 2 and g.loc["shell", "mean"] == pytest.approx(0.515)
    t = res["tests"].iloc[0]
    assert t["difference"] == pytest.approx(0.515 - 0.405)
    assert 0 < t["welch_p"] < 0.05 and res["ratio_label"] == "Cs:PbBr" and not res["warnings"]


def interrupting_process(stack, config):
    """Stands for a Ctrl-C while the stack ``b`` is being analysed."""
    if Path(stack.path).stem == "b":
        raise KeyboardInterrupt
    return fake_process(stack, config)


def test_interrupt_writes_what_finished_and_a_rerun_resumes(tmp_path, good):
    out = tmp_path / "out"
    c = _stack(tmp_path / "in" / "c.tif", 1, 4, seed=2)
    with pytest.raises(BatchInterrupted) as stop:
        run_batch(good + [c], out, CONFIG, process=interrupting_process, progress=False)
    assert list(stop.value.rows["name"]) == ["a"] and stop.value.total == 3
    assert list(pd.read_csv(out / "summary.csv")["name"]) == ["a"]
    run = json.loads((out / "run.json").read_text())
    assert run["interrupted"] is True and run["not_finished"] == ["b", "c"]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no lock, no half result
    rows = run_batch(good + [c], out, CONFIG, process=fake_process, progress=False)
    assert list(rows["status"]) == ["skipped", "processed", "processed"]
    np.testing.assert_allclose(rows["ratio"], [0.5, 0.75, 0.25], rtol=1e-3)
    assert json.loads((out / "run.json").read_text())["interrupted"] is False


def test_run_json_reads_back_as_a_typed_record(tmp_path, good):
    out = tmp_path / "out"
    bad = tmp_path / "in" / "bad.tif"
    bad.write_bytes(b"not a tiff")
    c = _stack(tmp_path / "in" / "c.tif", 1, 4, seed=2)
    with pytest.raises(BatchInterrupted):
        run_batch(
            good + [c], out, CONFIG, process=interrupting_process, progress=False, command="cmd x"
        )
    run = read_run(out)
    assert run.to_dict() == json.loads((out / "run.json").read_text())  # the file, typed
    assert run.interrupted is True and run.not_finished == ["b", "c"] and run.command == "cmd x"
    assert run.counts == {"processed": 1, "skipped": 0, "failed": 0}
    assert run.config_hash == config_hash(CONFIG) and "numpy" in run.versions
    text = str(run)
    assert "1 processed, 0 reused, 0 failed" in text and "2 not finished" in text
    assert "rerun the same command" in text and "command: cmd x" in text
    run_batch(good + [bad], out, CONFIG, process=fake_process, progress=False)
    run = read_run(out)
    assert run.interrupted is False and run.not_finished == [] and run.command is None
    assert run.counts["failed"] == 1 and [s["status"] for s in run.stacks].count("failed") == 1
    assert "failed: " in str(run) and "bad" in str(run).split("failed: ")[-1]
    # a record from an older run, with keys missing, still reads; no file reads as None
    (out / "run.json").write_text(json.dumps({"counts": {"processed": 2}}))
    assert read_run(out).counts == {"processed": 2} and read_run(out).stacks is None
    assert "2 processed" in str(read_run(out)) and read_run(tmp_path / "none") is None


def test_a_second_run_on_the_same_folder_is_refused(tmp_path, good):
    out = tmp_path / "out"
    out.mkdir()
    with lock_output(out, command="stemqd process first") as held:
        assert held["pid"] == os.getpid() and held["took_over"] is None
        info = json.loads((out / LOCK_NAME).read_text())
        assert info["command"] == "stemqd process first" and info["started_utc"]
        with pytest.raises(InputError, match=f"another stemqd run.*pid {os.getpid()} on "):
            run_batch(good, out, CONFIG, process=fake_process, progress=False)
        assert not (out / "summary.csv").exists()
    assert not (out / LOCK_NAME).exists()  # released and removed
    assert set(run_batch(good, out, CONFIG, process=fake_process, progress=False)["status"]) == {
        "processed"
    }


def test_a_lock_left_by_a_dead_run_is_taken_over(tmp_path, good):
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    pid = int(dead.stdout)
    (out / LOCK_NAME).write_text(json.dumps({"pid": pid, "host": "here", "started_utc": "x"}))
    # and the half-written result of the stack it was writing when it was killed
    (out / ".a.k1ll3d__.tmp").mkdir()
    (out / ".a.k1ll3d__.tmp" / "columns.csv").write_text("x_px\n")
    lines = []
    rows = run_batch(good, out, CONFIG, process=fake_process, progress=False, log=lines.append)
    assert set(rows["status"]) == {"processed"}
    assert any("took over the lock" in line and f"pid {pid}" in line for line in lines)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # lock and leftover gone


def test_lock_is_held_across_processes(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from stemqd.batch import lock_output\n"
            "with lock_output(sys.argv[1], 'holder'):\n print('held', flush=True); time.sleep(60)",
            str(out),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(InputError, match=f"pid {holder.pid} on .*: holder"):
            with lock_output(out):
                pass
    finally:
        holder.kill()
        holder.wait()
    with lock_output(out) as held:  # the kernel released the dead holder's lock
        assert held["took_over"].startswith(f"pid {holder.pid} on ")


def test_progress_names_the_stage_in_progress_and_counts_agree(tmp_path, good, capsys):
    run_batch(good[:1], tmp_path / "one", CONFIG, process=fake_process, progress=True)
    err = capsys.readouterr().err
    # what the stack is doing next, numbered among its 3 stages (load, analyse, write)
    assert "reading 1/3" in err and "analysing 2/3" in err and "writing results 3/3" in err
    run_batch(good, tmp_path / "two", CONFIG, process=fake_process, progress=True)
    frames = capsys.readouterr().err.replace("\r", "\n").splitlines()
    assert any("a: analysing 2/3" in f for f in frames)
    # done= is drawn with the bar's own count, never one behind it
    for f in frames:
        if "done=" in f and "/2 [" in f:
            n = int(f.split("/2 [")[0].split()[-1].split("|")[-1])
            assert int(f.split("done=")[1].split()[0]) == n, f
    assert "2/2" in frames[-1] and "done=2" in frames[-1]


def test_the_first_fit_of_a_process_says_it_compiles(tmp_path, capsys):
    """The first stack of a process can sit in the column fit for up to a minute (numba
    compiles): its progress label says so; the next stack of the same process does not."""
    from stemqd.simulation.synthetic import perovskite_dot

    files = []
    for k, name in enumerate(("a", "b")):
        frames, _ = perovskite_dot(
            (160, 160), pixel_size_A=0.3, edge_cells=5, n_frames=3, dose=100, seed=k
        )
        write_stack_tiff(tmp_path / f"{name}.tif", frames.astype(np.float32), 0.3)
        files.append(str(tmp_path / f"{name}.tif"))
    rows = run_batch(files, tmp_path / "out", CONFIG, progress=True)
    assert list(rows["status"]) == ["processed", "processed"]
    frames = capsys.readouterr().err.replace("\r", "\n").splitlines()
    fitting = [f for f in frames if "fitting columns" in f]
    assert any("a: fitting columns (first stack of a process: compiling" in f for f in fitting)
    assert any("b: fitting columns" in f for f in fitting)
    assert not any("b: fitting columns (first stack" in f for f in fitting)
