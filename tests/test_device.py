"""nas.device.environment: what a study records names the versions installed."""

from __future__ import annotations

from importlib.metadata import version

import torch

import nas
from nas.device import environment


def test_environment_names_nas_and_the_installed_dependencies() -> None:
    env = environment(torch.device("cpu"))
    assert env["nas"] == nas.__version__
    assert env["torch"] == torch.__version__
    assert env["torch"].split("+")[0] == version("torch")  # the release a lock pins
    assert env["torchvision"] == version("torchvision")
    assert env["optuna"] == version("optuna")
    assert env["device"] == "cpu" and env["threads"] >= 1 and env["cuda"] is None
