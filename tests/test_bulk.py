"""The bulk first read of a study gives exactly the trials Optuna's own read gives."""

from __future__ import annotations

import json
import math
import os
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from nas.study.bulk import json_values, read_trials
from nas.study.queries import study_trials
from nas.study.storage import open_storage, shared_cache

PG_URL = os.environ.get("NAS_TEST_POSTGRES_URL")


def varied_study(url: str, name: str) -> optuna.Study:
    """Trials of every state, with inf values, intermediate values, attributes of all JSON
    kinds, and every kind of distribution."""
    storage = open_storage(url, heartbeat=False)
    study = optuna.create_study(study_name=name, storage=storage,
                                directions=["maximize", "minimize"])
    dists = {"i": IntDistribution(1, 9, log=True), "f": FloatDistribution(0.0, 1.0, step=0.25),
             "c": CategoricalDistribution(["a", 2, None, 1.5])}
    for n in range(12):
        state = [TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL][n % 3]
        values = [0.5 + n / 100, math.inf if n == 3 else 1000.0 * n]
        study.add_trial(optuna.trial.create_trial(
            state=state, distributions=dists,
            params={"i": 1 + n % 9, "f": 0.25 * (n % 5), "c": ["a", 2, None, 1.5][n % 4]},
            values=values if state == TrialState.COMPLETE else None,
            intermediate_values={0: 0.1, 1: -math.inf if n == 4 else 0.2},
            user_attrs={"spec": {"widths": [8, 16], "name": f"t{n}"}, "n": n, "x": None,
                        "ok": n % 2 == 0}, system_attrs={"constraints:max_params": -5.0 + n}))
    running = study.ask()
    running.set_user_attr("curve", [0.4])
    study.enqueue_trial({"i": 3, "f": 0.5, "c": "a"}, user_attrs={"continues": 1})
    return study


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_bulk_read_equals_optunas_read(kind: str, tmp_path: Path) -> None:
    if kind == "postgresql" and PG_URL is None:
        pytest.skip("NAS_TEST_POSTGRES_URL not set")
    url = f"sqlite:///{tmp_path / 'b.db'}" if kind == "sqlite" else PG_URL
    study = varied_study(url, f"bulk-{uuid.uuid4().hex[:8]}")
    backend = open_storage(url, heartbeat=False)
    study_id = backend.get_study_id_from_name(study.study_name)
    theirs = backend._get_trials(study_id, None, set(), -1)
    ours = read_trials(backend.engine, study_id)
    assert len(ours) == len(theirs) == 14
    for a, b in zip(ours, theirs):
        assert a == b, (a, b)
        assert a.datetime_start == b.datetime_start and a.system_attrs == b.system_attrs


def test_a_shared_cache_reads_once_then_only_what_changed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'b.db'}"
    study = varied_study(url, "s")
    cached = shared_cache(open_storage(url, heartbeat=False))
    loaded = optuna.load_study(study_name="s", storage=cached)
    again = optuna.load_study(study_name="s", storage=cached)
    first = study_trials(loaded)
    assert [t.number for t in first] == list(range(14))
    study.add_trial(optuna.trial.create_trial(state=TrialState.FAIL))  # another process adds one
    later = study_trials(again)
    assert len(later) == 15 and later[0] is first[0], "finished trials are not read again"


def test_attribute_texts_parse_in_one_call_as_one_by_one() -> None:
    texts = ['{"a": [1, 2]}', "[1, 2]", "null", '"x,y"', "Infinity", "-1.5e3", "true"]
    assert json_values(texts) == [json.loads(t) for t in texts]
    assert json_values([]) == []
    with pytest.raises(ValueError):  # a damaged text fails as it would alone, not silently
        json_values(["1", "{"])
    with pytest.raises(ValueError):  # a text that would split in two in one array
        json_values(["1,2", "3"])
    # what it cannot tell: damaged texts that complement each other (never written by Optuna)
    assert json_values(["1,2", "[3", "4]"]) == [1, 2, [3, 4]]
