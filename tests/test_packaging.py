"""nas as a normal package: a wheel installed into a fresh virtual environment works from any
folder (presets and spaces are package data), and light commands do not import torch/Optuna."""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# each test process that runs these builds its own wheel, in a private copy of the source:
# setuptools writes build/ and nas.egg-info/ into the tree it builds, and two builds of the
# checkout at once broke CI (one removed build/lib while the other copied into it)
SOURCE = ["pyproject.toml", "README.md", "nas", "spaces"]
LEFT_OUT = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "*.pyc")


def run(args: list[str], cwd: Path, timeout: float = 300,
        **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**environment, **env})
    assert done.returncode == 0, f"{args}: {done.stdout}{done.stderr}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh venv holding nas from a wheel built here; its dependencies (torch, optuna...)
    come from this environment through a .pth line, so nothing is downloaded."""
    root = tmp_path_factory.mktemp("pkg")
    source = root / "source"
    for name in SOURCE:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, symlinks=True, ignore=LEFT_OUT)
        else:
            source.mkdir(exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(root / "dist"), str(source)], root)
    [wheel] = (root / "dist").glob("nas-*.whl")
    venv = root / "venv"
    run([sys._base_executable, "-m", "venv", str(venv)], root)  # noqa: SLF001
    purelib = Path(run([str(venv / "bin" / "python"), "-c",
                        "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                       root).stdout.strip())
    deps = [p for p in site.getsitepackages() if Path(p).is_dir()] or \
        [sysconfig.get_paths()["purelib"]]
    (purelib / "deps.pth").write_text("\n".join(deps) + "\n")
    run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "--no-index",
         str(wheel)], root)
    yield venv


def test_the_installed_package_is_the_wheel_not_the_checkout(installed: Path,
                                                             tmp_path: Path) -> None:
    where = run([str(installed / "bin" / "python"), "-c", "import nas; print(nas.__file__)"],
                tmp_path).stdout.strip()
    assert Path(where).is_relative_to(installed) and not Path(where).is_relative_to(REPO)


def test_presets_and_spaces_work_from_another_folder(installed: Path, tmp_path: Path) -> None:
    nas = str(installed / "bin" / "nas")
    presets = run([nas, "presets"], tmp_path).stdout
    assert "resnet18" in presets and "d2l_lenet_bn" in presets
    summary = run([nas, "summary", "resnet18", "--json"], tmp_path).stdout
    assert '"params": 11689512' in summary
    assert "resnext" in run([nas, "spaces"], tmp_path).stdout


@pytest.mark.slow
def test_a_search_runs_from_another_folder_into_its_studies(installed: Path,
                                                            tmp_path: Path) -> None:
    nas = str(installed / "bin" / "nas")
    run([nas, "search", "--space", "resnext", "--trials", "2", "--epochs", "1", "--subset",
         "0.02", "--jobs", "1"], tmp_path, timeout=600)
    assert (tmp_path / "studies" / "resnext.db").is_file()


@pytest.mark.parametrize("command", [["--help"], ["presets"], ["spaces"], ["search", "--help"]])
def test_light_commands_import_neither_torch_nor_optuna(command: list[str],
                                                        tmp_path: Path) -> None:
    done = run([sys.executable, "-X", "importtime", "-m", "nas", *command], tmp_path,
               PYTHONPATH=str(REPO))
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines()}
    assert "nas.cli" in imported
    assert not {"torch", "optuna", "pandas"} & imported, sorted({"torch", "optuna"} & imported)
