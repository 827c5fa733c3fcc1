"""The confirmation of a study (`nas confirm`, the linked study `S.confirm`) as report data:
the findings, a frame per retrained architecture, and which front neighbours differ by less
than the seed noise."""

from __future__ import annotations

import math

import optuna
import pandas as pd

from nas.analysis.confirmation import ConfirmSummary, summarize
from nas.analysis.trust import NoiseFloor
from nas.study.locate import linked_confirmation

CONFIRM_COLUMNS = ("trial", "group", "search_accuracy", "confirmed_accuracy", "seed_std",
                   "seeds", "on_search_front", "on_confirmed_front")


def linked_summary(study: optuna.Study) -> ConfirmSummary | None:
    """The findings of the study's confirmation so far, if it has one (in its storage)."""
    linked = linked_confirmation(study)
    return None if linked is None else summarize(study, linked)


def confirmation_frame(summary: ConfirmSummary) -> pd.DataFrame:
    """One row per retrained architecture (columns CONFIRM_COLUMNS), best confirmed first."""
    rows = [{"trial": a.trial, "group": a.group, "search_accuracy": a.search_accuracy,
             "confirmed_accuracy": math.nan if a.mean is None else a.mean,
             "seed_std": math.nan if a.std is None else a.std,
             "seeds": len(a.confirm_accuracies), "on_search_front": a.group == "front",
             "on_confirmed_front": a.on_confirmed_front} for a in summary.architectures]
    frame = pd.DataFrame(rows, columns=list(CONFIRM_COLUMNS))
    return frame.sort_values(["confirmed_accuracy", "trial"], ascending=[False, True],
                             ignore_index=True)


def within_noise(accuracies: list[float], noise: NoiseFloor | None) -> list[bool]:
    """For front accuracies sorted best first: whether each differs from a neighbour (the one
    before or after) by less than the seed noise explains. All False while it is unknown."""
    close = [noise is not None and noise.indistinguishable(a, b)
             for a, b in zip(accuracies, accuracies[1:])]
    return [(i > 0 and close[i - 1]) or (i < len(close) and close[i])
            for i in range(len(accuracies))]


__all__ = ["CONFIRM_COLUMNS", "confirmation_frame", "linked_summary", "within_noise"]
