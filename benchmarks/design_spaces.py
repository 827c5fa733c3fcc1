"""The RegNet paper's sequence of design spaces, AnyNetX_A -> B -> C -> D -> E, on Fashion-MNIST.

For each space, N models drawn by the random sampler are trained at the search's CPU budget
(2 epochs on a quarter of the training split, early stopping off: a stopped model has no error
at the full budget), one study per space, all in one SQLite file. Then, in the same run: each
space's normalised error EDF at matched params on the cost bins every space shares, its mean
error with a bootstrap interval, the shift of each refinement (A->B, B->C, C->D, D->E, and A->E)
with its interval, and `nas analyze` on the A study (timed, as its own process). Prints the
tables and writes an HTML page with the EDFs.

The studies resume: run the same command again (same --out) to finish an interrupted run or to
add models (a larger --models).

    python benchmarks/design_spaces.py --models 32 --jobs 2 --out /tmp/design_spaces
"""

from __future__ import annotations

import argparse
import html
import os
import subprocess
import sys
import time
from pathlib import Path

import optuna

from nas.analysis import compare_spaces, space_edf_figure
from nas.analysis.study import study_models
from nas.report.html import figure_block, page, table, write_page
from nas.search.request import SearchRequest
from nas.search.space import load_space
from nas.search.work import search as run_search
from nas.study import study_trials, trained_count

SPACES = {"anynet": "A", "anynet_b": "B", "anynet_c": "C", "anynet_d": "D", "anynet_e": "E"}
PAIRS = [("A", "B"), ("B", "C"), ("C", "D"), ("D", "E"), ("A", "E")]


def search(space: str, args: argparse.Namespace, url: str) -> tuple[optuna.Study, float]:
    """The space's study with --models finished trials; seconds this run spent on it."""
    req = SearchRequest(space=load_space(space), trials=args.models, study=space, storage=url,
                        sampler="random", early_stop=False, device="cpu", epochs=args.epochs,
                        subset=args.subset, seed=args.seed)
    start, shown = time.perf_counter(), [-1]

    def poll(study: optuna.Study) -> None:  # one log line per finished trial
        done = trained_count(study)
        if done != shown[0]:
            shown[0] = done
            print(f"  {space}: {done}/{args.models} finished, "
                  f"{time.perf_counter() - start:.0f} s", flush=True)

    study = run_search(req, args.jobs, poll=poll)
    return study, time.perf_counter() - start


def analyze_a(url: str) -> tuple[str, float]:
    """`nas analyze` on the A study, as a user runs it: its output and wall time."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "nas", "analyze", "--study", "anynet",
                           "--storage", url], capture_output=True, text=True, env=env,
                          check=False)
    return (done.stdout + done.stderr).rstrip(), time.perf_counter() - start


def rounded(frame: object) -> str:
    """A frame as text, floats to 4 decimals."""
    return frame.to_string(index=False, float_format=lambda v: f"{v:.4f}")  # type: ignore[attr-defined]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", type=int, default=32, help="random models per space")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--subset", type=float, default=0.25)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--n-boot", type=int, default=2000)
    p.add_argument("--out", type=Path, default=Path("studies/design_spaces"))
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{args.out / 'design_spaces.db'}"
    started = time.perf_counter()
    populations, seconds = {}, {}
    for space, letter in SPACES.items():
        study, seconds[letter] = search(space, args, url)
        populations[letter] = study_models(study_trials(study))
        print(f"{letter} ({space}): {len(populations[letter])} distinct models trained "
              f"({seconds[letter]:.0f} s)", flush=True)
    result = compare_spaces(populations, "params", pairs=PAIRS, n_boot=args.n_boot,
                            seed=args.seed)
    analysis, analyze_s = analyze_a(url)
    total = time.perf_counter() - started
    budget = f"{args.epochs} epochs on {args.subset:g} of the training split"
    print(f"\nnormalised error EDFs at matched params ({result.shared_bins} of {result.bins} "
          f"log-cost bins shared by all spaces); {budget}; {args.n_boot} bootstrap resamples, "
          f"95% intervals")
    print(rounded(result.summary))
    print("\nshift = mean error of the second space - of the first (< 0: the refinement helps)")
    print(rounded(result.shifts))
    print(f"\nnas analyze --study anynet ({analyze_s:.1f} s):\n{analysis}")
    print(f"\nwall time {total / 60:.1f} min (searches {sum(seconds.values()) / 60:.1f} min, "
          f"{args.jobs} workers)")
    text = page("AnyNetX A to E on Fashion-MNIST", [
        f'<p class="note">{args.models} random models per space, {budget}; '
        f"study file {args.out / 'design_spaces.db'}.</p>",
        table(result.summary), table(result.shifts),
        figure_block(space_edf_figure(result), "spaces"),
        f"<h2>nas analyze --study anynet</h2><pre>{html.escape(analysis)}</pre>"])
    target = write_page(text, args.out / "design_spaces.html")
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
