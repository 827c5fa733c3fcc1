"""requirements.lock: what `make run` and `make test` install (scripts/setup.sh) pins every
dependency pyproject.toml names, at a version its range allows (`make lock` refreshes it)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]


def pins() -> dict[str, str]:
    lines = (REPO / "requirements.lock").read_text().splitlines()
    entries = [line for line in lines if line and not line.startswith("#")]
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+==[^=\s]+", e) for e in entries), entries
    found = {canonicalize_name(e.split("==")[0]): e.split("==")[1] for e in entries}
    assert len(found) == len(entries), "a package pinned twice"
    return found


def test_the_lock_pins_every_dependency_within_its_range() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = [Requirement(r) for r in [*project["dependencies"],
                                       *project["optional-dependencies"]["test"]]]
    pinned = pins()
    assert "nas" not in pinned, "the project itself is installed from the checkout"
    for req in wanted:
        name = canonicalize_name(req.name)
        assert name in pinned, f"{req.name} is not in requirements.lock: run `make lock`"
        assert req.specifier.contains(pinned[name], prereleases=True), (req, pinned[name])
        for extra in req.extras:  # psycopg[binary] brings psycopg-binary
            assert canonicalize_name(f"{req.name}-{extra}") in pinned, (req, extra)
    assert {"pip", "setuptools", "torch", "torchvision"} <= pinned.keys()


def test_the_lock_says_how_it_was_made_and_for_which_python() -> None:
    head = (REPO / "requirements.lock").read_text().split("\n", 5)
    assert re.fullmatch(r"# python 3\.\d+ on \w+ \w+", head[1]), head[1]
    assert "make lock" in "".join(head[:5])
