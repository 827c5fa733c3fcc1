"""Studies: the typed trial record (record), storages (storage), finding and opening a study
(locate), the questions asked of one (queries: front, best, feasible...), export and the
dashboard. Everything that reads or writes a trial's attributes goes through here; nothing
here imports torch."""

from nas.study.locate import StudyRef, load_study, locate_study, open_located
from nas.study.queries import (
    FINISHED,
    KINDS,
    StudyTrial,
    best,
    count_kinds,
    finished_count,
    front,
    hypervolume,
    study_front,
    study_trials,
    trained_count,
    trial_kind,
)
from nas.study.record import (
    COST_LABELS,
    COSTS,
    OBJECTIVE_FIELDS,
    StudySettings,
    TrialRecord,
    directions,
    write_trial,
)
from nas.study.storage import default_storage, mask_url, open_existing, open_storage

__all__ = ["COSTS", "COST_LABELS", "FINISHED", "KINDS", "OBJECTIVE_FIELDS", "StudyRef",
           "StudySettings", "StudyTrial", "TrialRecord", "best", "count_kinds", "default_storage",
           "directions", "finished_count", "front", "hypervolume", "load_study", "locate_study",
           "mask_url", "open_existing", "open_located", "open_storage", "study_front",
           "study_trials", "trained_count", "trial_kind", "write_trial"]
