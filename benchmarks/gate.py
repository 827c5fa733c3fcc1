"""How long a trial refused by --max-params takes, against building and measuring its model.

For a space of large ResNets at 96 px, the gate decides from the meta-device build (no weights,
no forward), so a refused trial costs Optuna's ask and tell and its SQLite writes. Prints both,
side by side, for the same specs.
Run: python benchmarks/gate.py [--trials 24]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from optuna.trial import TrialState

from nas.builder import build
from nas.cost import measure
from nas.io import parse_spec
from nas.search.request import SearchRequest
from nas.search.space import load_space
from nas.search.work import search as run_search

SPACE = ("family: resnet\nfixed: {stem: simple, depths: [2, 2, 2], widths: [256, 512, 1024], "
         "input_size: 96}\n"
         "dimensions:\n  stem_width: {low: 8, high: 64}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=24)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        space = Path(folder) / "wide.yaml"
        space.write_text(SPACE)
        study = run_search(SearchRequest(
            space=load_space(space), trials=args.trials, study="gate", epochs=1, subset=0.02,
            storage=f"sqlite:///{Path(folder) / 'gate.db'}", max_params=1000, sampler="random",
            device="cpu"))
        trials = study.get_trials(states=(TrialState.COMPLETE,))
        gated = [(t.datetime_complete - t.datetime_start).total_seconds() for t in trials]
        built = []
        for t in trials:
            start = time.perf_counter()
            spec = parse_spec(t.user_attrs["spec"])
            measure(build(spec), spec.in_channels, spec.input_size)
            built.append(time.perf_counter() - start)
    refused = sum(str(t.user_attrs.get("reason", "")).startswith("over_budget") for t in trials)
    print(f"{len(trials)} trials, {refused} refused by the gate")
    print(f"{'':24}{'min s':>8}{'median s':>10}{'max s':>8}")
    for name, xs in (("gated trial (ask..tell)", gated), ("build + measure", built)):
        print(f"{name:24}{min(xs):8.3f}{statistics.median(xs):10.3f}{max(xs):8.3f}")
    print(f"median ratio build/gated: {statistics.median(built) / statistics.median(gated):.1f}x")


if __name__ == "__main__":
    main()
