"""`nas train`'s run folders: named by spec and budget, held by one process, never left empty, and
an interrupted run says where its checkpoint is."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nas.errors import UserError
from nas.io import load_spec
from nas.train import Budget, TrainConfig
from nas.train.run import DataSource, RunFolder, default_run_path

LENET = "d2l_lenet_bn"
REPO = Path(__file__).resolve().parents[1]


def path(**changes: object) -> Path:
    budget = {"epochs": 1, "subset": 0.05, **{k: v for k, v in changes.items()
                                              if k in Budget.__dataclass_fields__}}
    config = {k: v for k, v in changes.items() if k in TrainConfig.__dataclass_fields__}
    return default_run_path(LENET, load_spec(LENET), Budget(**budget),  # type: ignore[arg-type]
                            TrainConfig(**config), DataSource())  # type: ignore[arg-type]


def test_the_default_folder_names_the_budget_as_well_as_the_spec() -> None:
    one = path()
    assert one.parent == Path("studies/runs")
    assert one.name.startswith(f"{LENET}-{load_spec(LENET).content_hash()[:8]}-e1-sub0.05-s0-")
    assert path(epochs=2).name.startswith(f"{LENET}-{load_spec(LENET).content_hash()[:8]}-e2-")
    others = [path(epochs=2), path(subset=1.0), path(seed=1), path(batch_size=64), path(lr=0.1),
              path(max_steps=5), path(optimizer="adamw"), path(label_smoothing=0.1)]
    assert len({one, *others}) == 1 + len(others), "each setting that changes the result"
    # what a resumed run may change, and what changes no result, keep the folder
    assert path(time_limit_s=60.0) == path(threads=1) == path(compile=True) == one


def test_a_folder_is_held_by_one_run_at_a_time(tmp_path: Path) -> None:
    with RunFolder.claim(tmp_path / "run", overwrite=False) as folder:
        assert folder.lock.read_text() == f"{os.getpid()}\n"
        with pytest.raises(UserError) as refused:
            with RunFolder.claim(tmp_path / "run", overwrite=True):
                pass
        assert str(refused.value) == (f"{tmp_path / 'run'}: another nas train (pid {os.getpid()}) "
                                      f"is writing this folder; wait for it to end, or pass "
                                      f"another --out")
        folder.result.write_text("{}")
    assert not folder.lock.exists(), "the lock file goes with the run"
    with pytest.raises(UserError, match="already holds a result; pass --overwrite"):
        with RunFolder.claim(tmp_path / "run", overwrite=False):
            pass


def test_a_run_that_leaves_nothing_leaves_no_folder_it_made(tmp_path: Path) -> None:
    made = tmp_path / "new" / "run"
    with pytest.raises(KeyboardInterrupt), RunFolder.claim(made, overwrite=False):
        raise KeyboardInterrupt
    assert not made.exists() and made.parent.exists()
    kept = tmp_path / "kept"
    with pytest.raises(KeyboardInterrupt), RunFolder.claim(kept, overwrite=False) as folder:
        folder.checkpoint.write_bytes(b"epoch 1")
        raise KeyboardInterrupt
    assert sorted(p.name for p in kept.iterdir()) == ["checkpoint.pt"]
    before = tmp_path / "before"  # a folder that existed (even empty) is never removed
    before.mkdir()
    with pytest.raises(UserError), RunFolder.claim(before, overwrite=False):
        raise UserError("data missing")
    assert before.is_dir() and not any(before.iterdir())


def start_train(out: Path, *extra: str) -> subprocess.Popen[str]:
    args = [sys.executable, "-m", "nas", "train", LENET, "--subset", "0.02", "--batch-size",
            "64", "--threads", "1", "--no-progress", "--out", str(out), *extra]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=out.parent, preexec_fn=default_sigint)


def default_sigint() -> None:
    """A user's Ctrl-C is not ignored; a suite run in the background would pass on its
    ignored SIGINT (the run then trains to its end and exits 0)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)



def wait_for(file: Path, process: subprocess.Popen[str], timeout: float = 240) -> None:
    end = time.monotonic() + timeout
    while not file.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < end, f"no {file} after {timeout} s"
        time.sleep(0.05)


@pytest.mark.slow
def test_two_trainings_into_one_folder_one_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "same"
    first = start_train(out, "--epochs", "200")  # interrupted below, long before its end
    wait_for(out / "checkpoint.pt", first)
    second = start_train(out, "--epochs", "200")
    _, err = second.communicate(timeout=240)
    assert second.returncode == 2, err
    assert err.splitlines() == [f"nas: error: {out}: another nas train (pid {first.pid}) is "
                                f"writing this folder; wait for it to end, or pass another --out"]
    assert first.poll() is None, "the first run trains on, undisturbed"
    first.send_signal(signal.SIGINT)
    _, err = first.communicate(timeout=240)
    assert first.returncode == 130, err
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt"]


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "code", "word"), [(signal.SIGINT, 130, "interrupted"),
                                                   (signal.SIGTERM, 143, "terminated")])
def test_an_interrupted_run_says_where_its_checkpoint_is(tmp_path: Path, sig: int, code: int,
                                                        word: str) -> None:
    out = tmp_path / "run"
    run = start_train(out, "--epochs", "50")
    wait_for(out / "checkpoint.pt", run)
    run.send_signal(sig)
    _, err = run.communicate(timeout=240)
    assert run.returncode == code, err
    assert err.splitlines()[-1] == (f"nas: {word}: the checkpoint of the last finished epoch is "
                                    f"{out / 'checkpoint.pt'}; the same command resumes from it")
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt"]


@pytest.mark.slow
def test_a_run_interrupted_before_its_first_checkpoint_leaves_no_folder(tmp_path: Path) -> None:
    out = tmp_path / "run"
    run = start_train(out, "--epochs", "50")
    wait_for(out / ".lock", run)
    run.send_signal(signal.SIGINT)
    _, err = run.communicate(timeout=240)
    assert run.returncode == 130, err
    assert err.splitlines()[-1] == ("nas: interrupted before the first epoch ended: nothing "
                                    "saved; the same command starts the run again")
    assert not out.exists()
