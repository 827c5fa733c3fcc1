"""Which design rules make a space good: error EDFs at matched cost (Radosavovic et al. 2019)
and rule tests after the AnyNetX refinements (Radosavovic et al. 2020). Pure library: frames
first (edf, rules, compare), plotly figures drawn from them (figures); no Optuna, no torch."""

from nas.analysis.compare import EDF_COLUMNS, EFFECT_COLUMNS, MIN_MODELS, RuleEffects, rule_effects
from nas.analysis.edf import (
    Difference,
    bootstrap_ci,
    edf_area,
    edf_statistic,
    normalized_weights,
    weighted_edf,
    weighted_mean,
    weighted_quantile,
)
from nas.analysis.figures import rule_edf_figure, rule_effect_figure, space_edf_figure
from nas.analysis.rules import (
    WIDTH_BAND,
    Rule,
    RuleError,
    builtin_rules,
    check_fields,
    load_rules,
    parse_rules,
)
from nas.analysis.spaces import SpaceComparison, compare_spaces

__all__ = ["EDF_COLUMNS", "EFFECT_COLUMNS", "MIN_MODELS", "WIDTH_BAND", "Difference", "Rule",
           "RuleEffects", "RuleError", "SpaceComparison", "bootstrap_ci", "builtin_rules",
           "check_fields", "compare_spaces", "edf_area", "edf_statistic", "load_rules",
           "normalized_weights", "parse_rules", "rule_edf_figure", "rule_effect_figure",
           "rule_effects", "space_edf_figure", "weighted_edf", "weighted_mean",
           "weighted_quantile"]
