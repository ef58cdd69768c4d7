"""Long-run safety of the installed command, in subprocesses: a run killed with SIGKILL and
resumed (interrupted once more with SIGINT on the way) ends with exactly the parameters and
logged metrics of an uninterrupted run with the same seed.

The subprocesses share a persistent JAX compilation cache (a temporary folder), so only the
first one compiles the training step.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from click.testing import CliRunner
from flax import nnx

from eventssm.cli import main

ROOT = Path(__file__).resolve().parents[2]
ARGS = ["--steps", "8", "--batch-size", "2", "--crop-events", "256", "--log-every", "1", "--val-fraction", "0.34",
        "--stages", "1", "--layers-per-stage", "1", "--scan-method", "sequential", "--eval-every", "4",
        "--checkpoint-every", "2", "--keep", "8"]
TIMING = ("tokens_per_s", "data_wait")  # wall-clock figures: differ between any two runs


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    r = CliRunner()
    assert r.invoke(main, ["simulate", str(root / "raw"), "--per-class", "3", "--classes", "left,right", "--size",
                           "10x10", "--frames", "6", "--duration-ms", "100"]).exit_code == 0
    out = r.invoke(main, ["preprocess", str(root / "raw"), "-o", str(root / "cache.h5"), "--labels-from", "folder",
                          "--workers", "1", "-q"])
    assert out.exit_code == 0, out.output
    return root


def _env(root: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu", JAX_COMPILATION_CACHE_DIR=str(root / "jax-cache"),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    env.pop("XLA_FLAGS", None)
    return env


def _train(root: Path, run: str, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "eventssm", "train", str(root / "cache.h5"), "-o", str(root / run), *ARGS, *extra]
    return subprocess.Popen(cmd, env=_env(root), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    t0 = time.monotonic()
    while not path.exists():
        if proc.poll() is not None or time.monotonic() - t0 > timeout:
            proc.kill()
            pytest.fail(f"{path} did not appear: {proc.communicate()}")
        time.sleep(0.01)


def _records(run: Path) -> list[dict]:
    out = []
    for line in (run / "metrics.jsonl").read_text().splitlines():
        r = json.loads(line)
        out.append({k: v for k, v in r.items() if k not in TIMING})
    return out


def _params(run: Path) -> list[np.ndarray]:
    from eventssm.train import load_run

    return [np.asarray(x) for x in jax.tree_util.tree_leaves(nnx.state(load_run(run, "last").model, nnx.Param))]


def test_sigkill_then_sigint_then_resume_equals_an_uninterrupted_run(cache):
    ref = _train(cache, "ref")
    _, err = ref.communicate(timeout=300)
    assert ref.returncode == 0, err

    # 1. killed without warning once checkpoint 2 is complete (maybe while writing another one)
    proc = _train(cache, "run")
    _wait_for(cache / "run" / "checkpoints" / "2" / "eventssm.sha256", proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL

    # an existing run is never silently replaced
    again = _train(cache, "run")
    _, err = again.communicate(timeout=120)
    assert again.returncode == 2
    assert err.strip().splitlines() == [f"error: {cache / 'run'}: a run already exists there; continue it with "
                                        "--resume or replace it with --overwrite"]

    # 2. resumed, then Ctrl-C once training runs: the step finishes, is saved, exit 130
    proc = _train(cache, "run", "--resume")
    for line in proc.stdout:
        if line.startswith("compiled in"):
            break
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("interrupted at step ") and last.endswith(f"; saved {cache / 'run'}, continue with --resume")
    assert "Traceback" not in err
    step = int(last.split()[3].rstrip(";"))
    assert (cache / "run" / "checkpoints" / str(step) / "eventssm.sha256").is_file()

    # 3. resumed to the end
    _resume_and_compare(cache, "run", "ref")


def _resume_and_compare(cache: Path, run: str, ref: str) -> None:
    """Resume ``run`` to its end; its records and parameters equal the uninterrupted ``ref``'s."""
    proc = _train(cache, run, "--resume")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "resuming from step" in out
    assert _records(cache / run) == _records(cache / ref)
    for a, b in zip(_params(cache / run), _params(cache / ref), strict=True):
        np.testing.assert_array_equal(a, b)


def test_an_ensemble_interrupted_and_resumed_equals_an_uninterrupted_run(cache):
    """The same for an ensemble (two members of each of two embeddings): its stacked
    parameters, optimizer state and per-member dropout keys come back from the checkpoint."""
    ens = ("--members", "2", "--embedding", "table+fourier")
    ref = _train(cache, "ens_ref", *ens)
    _, err = ref.communicate(timeout=300)
    assert ref.returncode == 0, err
    proc = _train(cache, "ens", *ens)
    _wait_for(cache / "ens" / "checkpoints" / "2" / "eventssm.sha256", proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode in (0, 130), err  # 0: the run had finished before the signal came
    _resume_and_compare(cache, "ens", "ens_ref")
