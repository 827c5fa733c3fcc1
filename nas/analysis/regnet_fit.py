"""Fit RegNet's quantised linear width rule to the per-block widths of a residual network.

Radosavovic et al. 2020, section 3.3: with the depth d set to the number of blocks, w0, wa and
wm are searched to minimise e_fit, the mean over blocks of |log(w_j) - log(w'_j)| between the
observed widths w_j and the fitted rule's widths w'_j. Here w'_j are the widths the `regnet`
family builds: w0 * wm^round(log((w0 + wa j) / w0) / log(wm)), quantised to multiples of 8
and then made compatible with the group width (`regnet_stages`, as pycls and torchvision).

The search has two parts. An exact one first: the built width grows with the continuous width
and a block's exponent with its index, so a RegNet gives the observed stages when every
stage's first and last block get an exponent k whose width w0 * wm^k the family builds as the
stage's width. For an integer w0 and a given wm this bounds wa to an interval; wm is tried
where those bounds change and between them. Each candidate is checked with the family's own
rule, so a RegNet's stages come back exactly, e_fit = 0 (block widths cannot show a boundary
between two stages of equal width, so such a RegNet comes back with the two merged). When no
RegNet gives the stages, a grid over (w0, wm) is refined around its best points; for each
(w0, wm) the best wa is exact, from one wa inside every interval where no block's exponent
changes. e_fit is piecewise constant in the parameters, so gradient or simplex methods
(scipy's) would stall on its flat pieces; the grid and the exact wa take their place.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from nas.errors import SpecError
from nas.families.base import FamilySpec
from nas.families.regnet import regnet_stages
from nas.specs import Frozen, NetworkSpec, ResidualStage

QUANTUM = 8  # widths are quantised to multiples of 8 (pycls `q`)
WA_MAX, WM_MIN, WM_MAX = 256.0, 1.05, 4.0  # the `regnet` family's bounds; wm > 1.05 searched
MAX_DEPTH = 64


class RegNetFit(Frozen):
    """The RegNet closest to some per-block widths; e_fit is 0 when it gives them exactly."""

    w0: int
    wa: float
    wm: float
    depth: int
    group_width: int
    bottleneck_ratio: float
    se_ratio: float = 0.0
    e_fit: float
    stages: tuple[tuple[int, int], ...]  # (depth, width) of each stage of the fitted RegNet


def residual_stages(spec: FamilySpec | NetworkSpec) -> list[ResidualStage]:
    """The residual stages of a spec's lowered network; SpecError when it has none."""
    network = spec if isinstance(spec, NetworkSpec) else spec.lower()
    stages = [s for s in network.stages if isinstance(s, ResidualStage)]
    if not stages:
        raise SpecError("the spec has no residual stages, so no per-block widths to fit")
    return stages


def stage_plan(spec: FamilySpec | NetworkSpec) -> tuple[tuple[int, int], ...]:
    """(depth, width) of each residual stage of a spec's lowered network."""
    return tuple((s.depth, s.width) for s in residual_stages(spec))


def block_widths(spec: FamilySpec | NetworkSpec) -> list[int]:
    """One width per residual block, in order: each stage's width repeated `depth` times."""
    return [s.width for s in residual_stages(spec) for _ in range(s.depth)]


def fit_spec(spec: FamilySpec | NetworkSpec) -> RegNetFit:
    """Fit a spec's block widths, carrying over its group width, bottleneck ratio and SE.

    A RegNet clips the group width to each stage's bottleneck width, so the largest group width
    of the source is carried (a source without groups: its largest bottleneck width, one group);
    the ratio and SE ratio are those of its deepest stage. The fitted blocks are bottlenecks.
    """
    stages = residual_stages(spec)
    deepest = max(stages, key=lambda s: s.depth)
    group_width = max(s.group_width or s.bottleneck_width for s in stages)
    return fit_regnet(block_widths(spec), group_width, deepest.bottleneck_ratio, deepest.se_ratio)


def regnet_spec(fit: RegNetFit, source: FamilySpec | NetworkSpec) -> dict[str, Any]:
    """A `regnet` family spec for a fit, with the source's input, classes, stem and the stride
    of its first residual stage (so that every stage keeps the source's resolution)."""
    out: dict[str, Any] = {
        "family": "regnet", "depth": fit.depth, "w0": fit.w0, "wa": fit.wa, "wm": fit.wm,
        "group_width": fit.group_width, "bottleneck_ratio": fit.bottleneck_ratio,
        "se_ratio": fit.se_ratio, "in_channels": source.in_channels,
        "num_classes": source.num_classes, "input_size": source.input_size,
        "first_stride": residual_stages(source)[0].stride,
    }
    for name in ("stem", "stem_width"):
        if name in type(source).model_fields:
            out[name] = getattr(source, name)
    return out


def values_text(values: Sequence[Any]) -> str:
    """'1, 0.5, 0.25' (numbers as %g; None as 'none')."""
    return ", ".join("none" if v is None else f"{v:g}" for v in values)


def stem_text(stages: Sequence[Any]) -> str:
    """'conv 7x7/2 (64 channels), max pool 3x3/2': the stages before the first residual one."""
    parts = []
    for s in stages:
        if s.kind == "conv":
            bias = ", with bias" if s.bias else ""
            parts.append(f"conv {s.kernel}x{s.kernel}/{s.stride} ({s.width} channels{bias})")
        elif s.kind == "pool":
            parts.append(f"{s.mode} pool {s.kernel}x{s.kernel}/{s.stride or s.kernel}")
        else:
            parts.append(s.kind)
    return ", ".join(parts) or "none"


def fit_changes(source: FamilySpec | NetworkSpec, fitted: FamilySpec) -> list[str]:
    """What the fitted RegNet changes of the source, one plain sentence each (none: the same
    network)."""
    before = source if isinstance(source, NetworkSpec) else source.lower()
    after = fitted.lower()
    if before == after:
        return []
    src, got = residual_stages(before), residual_stages(after)
    out = stem_changes(before, after) + shared_changes(src, got)
    if any(s.block == "basic" for s in src):
        out.append("basic blocks (two 3x3 convs) become bottleneck blocks (1x1, grouped 3x3, 1x1)")
    later = [s.stride for s in src[1:]]
    if any(stride != 2 for stride in later):
        out.append(f"strides of the stages after the first {values_text(later)} become 2: a "
                   f"RegNet's later stages all downsample")
    plan = [(s.depth, s.width) for s in src]
    if plan != [(s.depth, s.width) for s in got]:
        pairs = list(zip(src, src[1:]))
        why = "".join(reason for reason, found in (
            ("; a RegNet's widths never decrease", any(b.width < a.width for a, b in pairs)),
            ("; stages of equal width in a row are one stage to a RegNet",
             any(a.width == b.width for a, b in pairs))) if found)
        if len(got) != len(src):
            why += (f" ({len(got)} stages, {plural(len(got) - 1, 'downsampling')} after the "
                    f"first, instead of {len(src)} and {len(src) - 1})")
        out.append(f"stages (depth x width) {stages_text(plan)} become "
                   f"{stages_text([(s.depth, s.width) for s in got])}{why}")
    if any(s.bias for s in src):
        out.append("conv biases dropped (a RegNet's convs have none)")
    if not all(s.shortcut_norm for s in src):
        out.append("batch norm added after the projection shortcuts (a RegNet's have it)")
    if before.head != after.head:
        out.append(f"head {before.head.model_dump(exclude_defaults=True)} becomes RegNet's "
                   f"global average pool and classifier")
    return out


def plural(n: int, noun: str) -> str:
    """'1 downsampling', '2 downsamplings'."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def stem_changes(before: NetworkSpec, after: NetworkSpec) -> list[str]:
    """The stem, when the fitted one differs."""
    first = [i for i, s in enumerate(before.stages) if isinstance(s, ResidualStage)][0]
    first_fit = [i for i, s in enumerate(after.stages) if isinstance(s, ResidualStage)][0]
    old, new = before.stages[:first], after.stages[:first_fit]
    return [] if old == new else [f"stem {stem_text(old)} becomes {stem_text(new)}"]


def shared_changes(src: list[ResidualStage], got: list[ResidualStage]) -> list[str]:
    """Per-stage bottleneck ratios, group widths and SE ratios that a RegNet shares."""
    out = []
    ratios, ses = [s.bottleneck_ratio for s in src], [s.se_ratio for s in src]
    if len(set(ratios)) > 1:
        out.append(f"bottleneck ratio per stage {values_text(ratios)} made shared: "
                   f"{got[0].bottleneck_ratio:g} (the deepest stage's)")
    if len(set(ses)) > 1:
        out.append(f"SE ratio per stage {values_text(ses)} made shared: {got[0].se_ratio:g} "
                   f"(the deepest stage's)")
    if all(s.groups == 1 for s in src + got):
        return out  # no grouped conv on either side
    widths, chosen = [s.group_width or s.bottleneck_width for s in src], got[0].group_width
    if len(set(widths)) > 1 or widths[0] != chosen:
        out.append(f"group width per stage {values_text(widths)} made shared: "
                   f"{max(s.group_width or 0 for s in got)} (the largest; a stage whose "
                   f"bottleneck is narrower gets its bottleneck width, one group)")
    return out


def stages_text(stages: Sequence[tuple[int, int]]) -> str:
    """'2x32 1x64 3x96' (depth x width per stage)."""
    return " ".join(f"{d}x{w}" for d, w in stages)


def params_and_macs(spec: FamilySpec) -> tuple[int, int]:
    """Parameters and MACs of one image, estimated on the meta device (nothing allocated)."""
    from nas.cost import MetaCost  # torch: only when costs are asked for

    costs = MetaCost(spec, batch_size=1)
    return costs.params, costs.cost.macs


def fit_regnet(
    widths: Sequence[int], group_width: int, bottleneck_ratio: float = 1.0, se_ratio: float = 0.0
) -> RegNetFit:
    """The RegNet (depth = number of blocks) whose block widths are closest to `widths`."""
    if not 1 <= len(widths) <= MAX_DEPTH or min(widths) < 1:
        raise SpecError(f"fit a RegNet to 1 to {MAX_DEPTH} positive block widths, "
                        f"got {len(widths)} widths")
    if group_width < 1 or bottleneck_ratio <= 0:
        raise SpecError("group_width and bottleneck_ratio must be positive")
    rule = Rule(np.asarray(widths, dtype=float), group_width, bottleneck_ratio)
    w0, wa, wm = rule.exact() or rule.search()
    wa, wm = rule.readable(w0, wa, wm)
    plan = regnet_stages(len(widths), w0, wa, wm, group_width, bottleneck_ratio)
    return RegNetFit(
        w0=w0, wa=wa, wm=wm, depth=len(widths), group_width=group_width,
        bottleneck_ratio=bottleneck_ratio, se_ratio=se_ratio, e_fit=rule.e_fit(w0, wa, wm),
        stages=tuple((d, w) for d, w, _ in plan),
    )


def built_widths(c: np.ndarray, group_width: int, ratio: float) -> np.ndarray:
    """Widths the `regnet` family builds for continuous widths c (`regnet_stages` vectorised)."""
    raw = np.rint(c / QUANTUM) * QUANTUM
    bottleneck = np.floor(raw * ratio)
    gw = np.maximum(np.minimum(group_width, bottleneck), 1)
    fitted = np.maximum(gw, np.floor((bottleneck + gw / 2) / gw) * gw)
    fitted = fitted + np.where(fitted < 0.9 * bottleneck, gw, 0)
    return np.floor(fitted / ratio)


def runs(widths: np.ndarray) -> list[tuple[float, int]]:
    """(width, count) of each run of equal consecutive widths: the stages."""
    return [(float(w), len(list(g))) for w, g in itertools.groupby(widths.tolist())]


class Rule:
    """The quantised linear rule against fixed target widths, group width and ratio."""

    def __init__(self, target: np.ndarray, group_width: int, ratio: float) -> None:
        self.target, self.group_width, self.ratio = target, group_width, ratio
        self.log_target = np.log(target)
        self.blocks = np.arange(len(target))
        self.stages = runs(target)
        self.stage_list = [(d, int(w)) for w, d in self.stages]
        depths = np.asarray([d for _, d in self.stages])
        self.first_block, self.last_block = np.cumsum(depths) - depths, np.cumsum(depths) - 1
        self.ranges = [self.raw_range(w) for w, _ in self.stages]

    def errors(self, w0: float, wa: np.ndarray | float, wm: float) -> np.ndarray:
        """e_fit for each wa (vectorised); the exponent as `regnet_stages` rounds it."""
        wa = np.atleast_1d(np.asarray(wa, dtype=float))[:, None]
        k = np.rint(np.log((w0 + wa * self.blocks) / w0) / np.log(wm))
        built = built_widths(w0 * wm**k, self.group_width, self.ratio)
        return np.abs(np.log(built) - self.log_target).mean(axis=1)

    def plan(self, w0: int, wa: float, wm: float) -> list[tuple[int, int, int]]:
        """The `regnet` family's own (depth, width, group width) per stage."""
        return regnet_stages(len(self.target), w0, wa, wm, self.group_width, self.ratio)

    def plan_widths(self, w0: int, wa: float, wm: float) -> list[int]:
        """Per-block widths of the family's plan."""
        return [w for d, w, _ in self.plan(w0, wa, wm) for _ in range(d)]

    def e_fit(self, w0: int, wa: float, wm: float) -> float:
        """Mean |log(w_j) - log(w'_j)| over blocks, w'_j from the family's own plan."""
        built = np.asarray(self.plan_widths(w0, wa, wm), dtype=float)
        return float(np.abs(np.log(built) - self.log_target).mean())

    def best_slope(self, w0: int, wm: float) -> tuple[float, float]:
        """(e_fit, wa): the best wa for (w0, wm).

        One wa is tried inside each interval between the wa where some block's exponent changes.
        """
        top = max(1, math.ceil(math.log(4 * self.target.max() / w0) / math.log(wm)))
        half = w0 * (wm ** (np.arange(top + 1) + 0.5) - 1)
        cuts = (half[:, None] / self.blocks[None, 1:]).ravel()
        cuts = np.unique(cuts[(cuts > 0) & (cuts < WA_MAX)])
        edges = np.concatenate([[0.0], cuts, [WA_MAX]])
        slopes = (edges[:-1] + edges[1:]) / 2
        errors = self.errors(w0, slopes, wm)
        best = int(np.argmin(errors))
        return float(errors[best]), float(slopes[best])

    def exact(self) -> tuple[int, float, float] | None:
        """(w0, wa, wm) of a RegNet whose block widths are exactly the target, if one is found.

        The built width grows with the continuous width, and the exponent with the block, so
        the widths are exact when every stage's first and last block are: each needs an
        exponent k with w0 * wm^k in its stage's range, which bounds wa. For each integer w0
        whose own width is right, wm is tried at and between the values where some stage's
        admissible exponents change; candidates are checked with the family's own rule.
        """
        if any(r is None for r in self.ranges):
            return None
        bounds = np.asarray(self.ranges, dtype=float)
        a, b = bounds[0]
        w0s = range(max(8, math.ceil(a)), math.floor(b) + 1)
        for w0 in sorted(w0s, key=lambda w: w % QUANTUM != 0):  # pycls: w0 a multiple of 8
            for wm, wa in self.slopes(w0, bounds[:, 0], bounds[:, 1]):
                if [(d, w) for d, w, _ in self.plan(w0, wa, wm)] == self.stage_list:
                    return w0, wa, wm
        return None

    def raw_range(self, width: float) -> tuple[float, float] | None:
        """The continuous widths that the family builds as `width`, ends (ties) included."""
        m = np.arange(1, int(2 * width / QUANTUM) + self.group_width // QUANTUM + 4)
        hits = m[built_widths(m * float(QUANTUM), self.group_width, self.ratio) == width]
        if not len(hits):
            return None
        return QUANTUM * (hits.min() - 0.5), QUANTUM * (hits.max() + 0.5)

    def slopes(self, w0: int, low: np.ndarray, high: np.ndarray) -> list[tuple[float, float]]:
        """(wm, wa) candidates for w0 and the stages' ranges, the widest wa interval first.

        wm is tried where some stage's admissible exponents change (`slope_intervals`), and
        at three points between each two.
        """
        top = math.ceil(math.log(max(high.max(), w0) / w0) / math.log(WM_MIN))
        cuts = (np.concatenate([low, high])[:, None] / w0) ** (1 / np.arange(1, top + 2))
        cuts = np.unique(cuts[(cuts >= WM_MIN) & (cuts <= WM_MAX)])
        edges = np.concatenate([[WM_MIN], cuts, [WM_MAX]])
        wms = (edges[:-1, None] + np.diff(edges)[:, None] * [0.0, 0.25, 0.5, 0.75]).ravel()
        lo, hi = self.slope_intervals(w0, wms, low, high)
        order = np.argsort((lo - hi) / hi)
        return [(float(wms[i]), float((lo[i] + hi[i]) / 2)) for i in order if lo[i] < hi[i]]

    def slope_intervals(self, w0: int, wms: np.ndarray, low: np.ndarray, high: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray]:
        """For each wm, the interval [lo, hi) of wa giving every stage an admissible exponent.

        Stage s may take the exponents k with low_s <= w0 wm^k <= high_s. Block j has exponent
        k when w0 wm^(k - 1/2) <= w0 + wa j < w0 wm^(k + 1/2), so a stage's first block bounds
        wa from below by its smallest k, its last block from above by its largest. An empty
        interval has lo >= hi.
        """
        wm, logs = wms[:, None], np.log(wms)[:, None]
        k_low = np.ceil(np.log(low / w0) / logs - 1e-9)  # ends are ties: `exact` checks them
        k_high = np.floor(np.log(high / w0) / logs + 1e-9)
        first, last = self.first_block, self.last_block
        lo = (w0 * (wm ** (k_low - 0.5) - 1) / np.maximum(first, 1))[:, first >= 1]
        hi = (w0 * (wm ** (k_high + 0.5) - 1) / np.maximum(last, 1))[:, last >= 1]
        lo, hi = lo.max(axis=1, initial=0.0), hi.min(axis=1, initial=WA_MAX)
        return lo, np.where(np.all(k_low <= k_high, axis=1), hi, -1.0)

    def search(self) -> tuple[int, float, float]:
        """Best (w0, wa, wm) on a grid of (w0, wm), then on a finer grid around the best few.

        e_fit is piecewise constant in (w0, wm), so no gradient or simplex method applies; wa
        is exact for each (w0, wm) (`best_slope`).
        """
        first = self.target[0]
        w0s = sorted({max(8, int(round(first * f))) for f in np.geomspace(0.5, 1.5, 12)})
        coarse = sorted((*self.best_slope(w0, wm), w0, wm)
                        for w0 in w0s for wm in np.geomspace(1.1, WM_MAX, 32))
        fine = [(*self.best_slope(w0 + dw, wm * f), w0 + dw, wm * f)
                for _, _, w0, wm in coarse[:4]
                for dw in (-8, -4, -2, -1, 0, 1, 2, 4, 8) if w0 + dw >= 8
                for f in np.linspace(0.96, 1.04, 17) if 1 < wm * f <= WM_MAX]
        _, wa, w0, wm = min(coarse[:1] + fine)
        return int(w0), wa, float(wm)

    def readable(self, w0: int, wa: float, wm: float) -> tuple[float, float]:
        """wa and wm with few decimals (up to 6) that give the same stages.

        For an exact fit the wa interval is recomputed at each shortened wm, so both can be
        short; otherwise both are rounded alike.
        """
        same = self.plan(w0, wa, wm)
        exact = [(d, w) for d, w, _ in same] == self.stage_list
        for places in range(2, 7):
            short_wm = round(wm, places)
            options = [round(wa, places)]
            if exact and 1 < short_wm <= WM_MAX:
                bounds = np.asarray(self.ranges, dtype=float)
                lo, hi = self.slope_intervals(w0, np.asarray([short_wm]), bounds[:, 0],
                                              bounds[:, 1])
                options = [round((lo[0] + hi[0]) / 2, p) for p in range(7)] + options
            for short_wa in options:
                if 0 < short_wa <= WA_MAX and 1 < short_wm <= WM_MAX and \
                        self.plan(w0, short_wa, short_wm) == same:
                    return short_wa, short_wm
        return wa, wm
