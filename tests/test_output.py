"""Terminal output never breaks a path or a command across lines: real `nas` processes, their
output piped (COLUMNS=40, as a narrow terminal would say) or on a 40-column pseudo-terminal."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import shlex
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY_SPACE = REPO / "tests" / "spaces" / "tiny_resnext.yaml"
ENV = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "40"}


def nas(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`nas ARGS` with stdout and stderr piped."""
    return subprocess.run([sys.executable, "-m", "nas", *args], cwd=cwd, env=ENV,
                          capture_output=True, text=True, timeout=600)


def whole(text: str, *pieces: str) -> None:
    """Each piece (a path, a command) is inside one line of `text`."""
    lines = text.splitlines()
    for piece in pieces:
        assert any(piece in line for line in lines), f"{piece!r} broken or missing in:\n{text}"


@pytest.fixture
def deep(tmp_path: Path) -> Path:
    """A folder whose path alone is longer than 40 columns."""
    folder = tmp_path / "a-folder-with-a-rather-long-name" / "and-another-one-below-it"
    folder.mkdir(parents=True)
    return folder


def test_piped_output_keeps_paths_and_lines_whole(deep: Path) -> None:
    spec = deep / "my-network-with-a-long-name.yaml"
    spec.write_text((REPO / "spaces" / "presets" / "resnet18.yaml").read_text())
    done = nas("validate", str(spec), cwd=deep)
    whole(done.stdout, f"{spec}: ok (resnet, hash ")
    done = nas("summary", str(spec), cwd=deep)
    assert done.returncode == 0, done.stderr
    whole(done.stdout, "activations 2,484,712 values (conv and linear outputs of one image, 9.5 "
                       "MiB as fp32)   peak forward memory", "training memory (sgd) ",
          "optimiser 44.6 MiB, activations ")
    done = nas("fit-regnet", "regnet_x_400mf", "--out", str(deep), cwd=deep)
    [fitted] = deep.glob("regnet_x_400mf-regnet-*.yaml")
    whole(done.stdout, f"wrote {fitted} (the regnet fitted to regnet_x_400mf)")
    done = nas("schema", "--out", str(deep / "a-schema-for-my-editor.json"), cwd=deep)
    whole(done.stdout, f"wrote {deep / 'a-schema-for-my-editor.json'}")
    done = nas("validate", str(deep / "no-such-spec-file-anywhere.yaml"), cwd=deep)
    assert done.returncode == 2
    assert done.stderr == f"nas: error: {deep / 'no-such-spec-file-anywhere.yaml'}: no such file\n"
    done = nas("spaces", cwd=deep)
    whole(done.stdout, "ResNet for 64-224 px, ImageNet stem, 3-4 stages, basic or bottleneck "
                       "blocks", "AnyNetX_A, 4 stages, free per-stage depth 1-3, width 32-128, "
                                 "ratio, group width")


@pytest.mark.slow
def test_a_search_and_what_follows_it_print_their_commands_whole(deep: Path) -> None:
    db = deep / "a-study-file-with-a-long-name.db"
    done = nas("search", "--space", str(TINY_SPACE), "--trials", "2", "--epochs", "1",
               "--subset", "0.01", "--batch-size", "64", "--jobs", "1", "--device", "cpu",
               "--study", "tiny", "--storage", f"sqlite:///{db}", cwd=deep)
    assert done.returncode == 0, done.stderr
    [export] = [line for line in done.stdout.splitlines() if line.startswith("export:")]
    argv = shlex.split(export.removeprefix("export:"))
    assert argv[:2] == ["nas", "export"] and f"sqlite:///{db}" in argv and argv[-2] == "--out"
    exported = nas(*argv[1:], cwd=deep)
    assert exported.returncode == 0, exported.stderr
    out = Path(argv[-1])  # as printed: relative to the working folder
    manifest = json.loads((deep / out / "manifest.json").read_text())
    for entry in manifest["trials"]:
        whole(exported.stdout, f"trial {entry['number']}: {out / entry['file']} (",
              f"  retrain: {entry['train_command']}")
    whole(exported.stdout, f"wrote {out / 'manifest.json'} (the retrain commands are in it too)")
    report = nas("report", "--study", "tiny", "--storage", f"sqlite:///{db}", cwd=deep)
    whole(report.stdout, "wrote studies/tiny-report.html")
    retrain = shlex.split(manifest["trials"][0]["train_command"])
    trained = nas(*retrain[1:], "--max-steps", "2", "--no-progress", cwd=deep)
    assert trained.returncode == 0, trained.stderr
    run = retrain[retrain.index("--out") + 1]
    whole(trained.stdout, f"wrote {run}/result.json, model.safetensors, spec.yaml")


def test_a_narrow_terminal_folds_long_lines_itself(deep: Path) -> None:
    """On a 40-column terminal a long line is written whole: the terminal folds it on screen,
    and copying it gives the path back in one piece."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 40, 0, 0))
    env = {**ENV, "TERM": "xterm-256color"}
    env.pop("COLUMNS")
    process = subprocess.Popen([sys.executable, "-m", "nas", "fit-regnet", "regnet_x_400mf",
                                "--out", str(deep)], cwd=deep, env=env, stdin=follower,
                               stdout=follower, stderr=follower)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # EIO: the process closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert process.wait(timeout=60) == 0
    text = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", b"".join(chunks).decode())
    [fitted] = deep.glob("regnet_x_400mf-regnet-*.yaml")
    whole(text.replace("\r\n", "\n"), f"wrote {fitted} (the regnet fitted to regnet_x_400mf)")
