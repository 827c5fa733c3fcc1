"""Reading a whole study at once, fast: the first read of a study's trials, done with one plain
SQL query per table instead of Optuna's ORM (which builds an object per attribute row: about
4 s for 2,000 trials here, most of `nas report`'s time); later reads stay Optuna's own
(only unfinished and new trials, through its cache).

The trials are built as Optuna's RDB storage builds them (`_build_frozen_trial_from_trial_model`)
from the same tables, so the cache holds the same FrozenTrials either way (tested); if the
tables are not what this expects (another Optuna schema), the read falls back to Optuna's.
"""

from __future__ import annotations

import datetime
import json
import logging
from collections import defaultdict
from typing import Any

from optuna import distributions
from optuna.storages._cached_storage import _CachedStorage, _StudyInfo
from optuna.trial import FrozenTrial

log = logging.getLogger("nas.study")


def _local(utc: datetime.datetime | None) -> datetime.datetime | None:
    """Optuna stores naive UTC and gives naive local time (TrialModel.datetime_start)."""
    if utc is None:
        return None
    return utc.replace(tzinfo=datetime.UTC).astimezone().replace(tzinfo=None)


def read_trials(engine: Any, study_id: int) -> list[FrozenTrial]:
    """Every trial of a study, read in one transaction (a consistent snapshot)."""
    from optuna.storages._rdb import models
    from sqlalchemy import select

    trial_table = models.TrialModel.__table__
    ids = select(trial_table.c.trial_id).where(trial_table.c.study_id == study_id)

    def rows(model: Any, *columns: str, order: str | None = None, raw: bool = False,
             ) -> list[Any]:
        table = model.__table__
        query = select(*(table.c[c] for c in columns)).where(table.c.trial_id.in_(ids))
        query = query.order_by(table.c[order]) if order else query
        return raw_rows(db, query) if raw else db.execute(query).all()

    connection = engine.connect()
    if engine.dialect.name == "postgresql":
        connection = connection.execution_options(isolation_level="REPEATABLE READ")
    with connection as db, db.begin():
        trials = db.execute(select(
            trial_table.c.trial_id, trial_table.c.number, trial_table.c.state,
            trial_table.c.datetime_start, trial_table.c.datetime_complete,
        ).where(trial_table.c.study_id == study_id).order_by(trial_table.c.trial_id)).all()
        params = rows(models.TrialParamModel, "trial_id", "param_name", "param_value",
                      "distribution_json", order="param_id", raw=True)
        values = rows(models.TrialValueModel, "trial_id", "objective", "value", "value_type")
        user = rows(models.TrialUserAttributeModel, "trial_id", "key", "value_json", raw=True)
        system = rows(models.TrialSystemAttributeModel, "trial_id", "key", "value_json",
                      raw=True)
        steps = rows(models.TrialIntermediateValueModel, "trial_id", "step",
                     "intermediate_value", "intermediate_value_type")
    return build(trials, params, values, user, system, steps)


def raw_rows(db: Any, query: Any) -> list[Any]:
    """A query's rows through the driver's own cursor, in `db`'s transaction: for the large
    tables of plain text and numbers (attributes, parameters), where SQLAlchemy's rows cost as
    much again as the driver's. The study id is the only bound value, an integer written
    into the SQL."""
    sql = str(query.compile(dialect=db.dialect, compile_kwargs={"literal_binds": True}))
    cursor = db.connection.cursor()
    try:
        cursor.execute(sql)
        return cursor.fetchall()
    finally:
        cursor.close()


def json_values(texts: list[str]) -> list[Any]:
    """Each JSON text parsed: in one call as an array (a call per text costs four times the
    parsing at 100,000 attributes), or one by one if the texts do not join into an array of as
    many values, which is how a damaged text (not JSON by itself) is found and fails as it
    would alone. Optuna writes every text with json.dumps; what this cannot tell apart is two
    damaged texts that complement each other (`[3` and `4]` beside `1,2`)."""
    try:
        values = json.loads("[" + ",".join(texts) + "]")
    except ValueError:
        values = None
    if values is None or len(values) != len(texts):  # e.g. a text "1,2" would split in two
        return [json.loads(t) for t in texts]
    return values


def build(trials: list[Any], params: list[Any], values: list[Any], user: list[Any],
          system: list[Any], steps: list[Any]) -> list[FrozenTrial]:
    """FrozenTrials from the rows of each table, as Optuna builds them."""
    from optuna.storages._rdb import models

    parsed: dict[str, distributions.BaseDistribution] = {}  # distribution JSON seen before
    by_trial: dict[str, dict[int, Any]] = {k: defaultdict(dict) for k in
                                           ("params", "dists", "values", "user", "system",
                                            "steps")}
    for trial_id, name, value, dist_json in params:
        dist = parsed.get(dist_json)
        if dist is None:
            dist = parsed[dist_json] = distributions.json_to_distribution(dist_json)
        by_trial["params"][trial_id][name] = dist.to_external_repr(value)
        by_trial["dists"][trial_id][name] = dist
    for trial_id, objective, value, value_type in values:
        by_trial["values"][trial_id][objective] = models.TrialValueModel.stored_repr_to_value(
            value, value_type)
    for kind, table in (("user", user), ("system", system)):
        parsed_values = json_values([value_json for _, _, value_json in table])
        for (trial_id, key, _), value in zip(table, parsed_values):
            by_trial[kind][trial_id][key] = value
    for trial_id, step, value, value_type in steps:
        by_trial["steps"][trial_id][step] = \
            models.TrialIntermediateValueModel.stored_repr_to_intermediate_value(value, value_type)
    out = []
    for trial_id, number, state, start, complete in trials:
        objectives = by_trial["values"].get(trial_id)
        out.append(FrozenTrial(
            number=number, state=state, value=None,
            values=[objectives[i] for i in range(len(objectives))] if objectives else None,
            datetime_start=_local(start), datetime_complete=_local(complete),
            params=dict(by_trial["params"].get(trial_id, {})),
            distributions=dict(by_trial["dists"].get(trial_id, {})),
            user_attrs=dict(by_trial["user"].get(trial_id, {})),
            system_attrs=dict(by_trial["system"].get(trial_id, {})),
            intermediate_values=dict(by_trial["steps"].get(trial_id, {})),
            trial_id=trial_id))
    return out


class BulkReadCache(_CachedStorage):
    """Optuna's cache of an RDB storage's trials whose first read of a study is `read_trials`."""

    def _read_trials_from_remote_storage(self, study_id: int) -> None:
        with self._lock:
            first = study_id not in self._studies or not self._studies[study_id].trials
            if first:
                try:
                    trials = read_trials(self._backend.engine, study_id)
                except Exception as e:  # noqa: BLE001  another schema: Optuna's own read
                    log.debug("bulk read of study %d failed (%s); reading through Optuna",
                              study_id, e)
                else:
                    self.remember(study_id, trials)
                    return
        super()._read_trials_from_remote_storage(study_id)

    def remember(self, study_id: int, trials: list[FrozenTrial]) -> None:
        """The cache's bookkeeping of `_read_trials_from_remote_storage`, for trials read in
        bulk (called with the lock held)."""
        study = self._studies.setdefault(study_id, _StudyInfo())
        self._add_trials_to_cache(study_id, trials)
        for trial in trials:
            if not trial.state.is_finished():
                study.unfinished_trial_ids.add(trial._trial_id)
            else:
                study.last_finished_trial_id = max(study.last_finished_trial_id,
                                                   trial._trial_id)


__all__ = ["BulkReadCache", "read_trials"]
