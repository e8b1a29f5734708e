"""What a study found: its trials as rows, their Pareto front, and the chosen point.

The chosen point answers the question the search is for: of the trials whose SVN is within
``search.physics_tolerance`` of fp32's (or better) and that keep at least
``search.min_speed_fraction`` of plain int8's speed (the median of its trials;
mode=single: that fit
``search.latency_budget_ms``), the one with the smallest physics distance. When no trial
meets both, the closest to them is named, and the selection says which condition failed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from statistics import median

import optuna
from optuna.trial import FrozenTrial, TrialState

from calo.errors import CaloError
from calo.search.evaluate import DISTANCE_KEYS, SPEED_KEYS
from calo.search.settings import SearchConfig, SearchMode, SearchSpeed
from calo.search.study import FP32_SVN_ATTR

__all__ = ["Selection", "Summary", "TrialRow", "pareto_front", "plain_int8", "select",
           "summarize_study", "table_rows", "trial_rows"]


@dataclass(frozen=True)
class TrialRow:
    """One completed trial: its fallback set and what was measured."""

    number: int
    keep_fp32: tuple[str, ...]
    svn: float
    pixel: float
    latency_ms: float
    throughput: float
    speedup: float | None
    distance: float  # the search's physics objective
    speed: float  # the search's speed objective


def trial_rows(trials: Iterable[FrozenTrial], search: SearchConfig) -> list[TrialRow]:
    """The completed trials of a study, in trial order."""
    rows = []
    for trial in trials:
        measured = trial.user_attrs.get("measurement")
        if trial.state is not TrialState.COMPLETE or measured is None:
            continue
        rows.append(TrialRow(trial.number, tuple(trial.user_attrs["keep_fp32"]),
                             measured["svn"], measured["pixel"], measured["latency_ms"],
                             measured["throughput"], measured["speedup"],
                             measured[DISTANCE_KEYS[search.physics]],
                             measured[SPEED_KEYS[search.speed]]))
    return rows


def _faster(speed: SearchSpeed):
    """A key that is larger for the faster trial, whatever the speed objective."""
    return (lambda row: -row.speed) if speed is SearchSpeed.latency else (lambda row: row.speed)


def pareto_front(rows: Sequence[TrialRow], speed: SearchSpeed) -> list[TrialRow]:
    """The trials no other trial beats in both physics distance and speed, fastest first."""
    faster = _faster(speed)

    def dominated(row: TrialRow) -> bool:
        return any(other.distance <= row.distance and faster(other) >= faster(row)
                   and (other.distance < row.distance or faster(other) > faster(row))
                   for other in rows)

    return sorted((row for row in rows if not dominated(row)), key=faster, reverse=True)


@dataclass(frozen=True)
class Selection:
    """The chosen trial, measured against fp32's SVN and plain int8's speed."""

    row: TrialRow | None
    plain: TrialRow | None  # plain int8: every switch off (its speed: median, plain_int8)
    fp32_svn: float
    svn_ratio: float | None  # chosen SVN / fp32 SVN
    speed_fraction: float | None  # chosen speed / plain int8 speed (latency: inverted)
    meets_physics: bool
    meets_speed: bool

    def sentence(self, search: SearchConfig) -> str:
        if self.row is None:
            return "no completed trial"
        tolerance = f"{100 * search.physics_tolerance:.0f} %"
        missed = [name for name, met in (("SVN", self.meets_physics),
                                         ("speed", self.meets_speed)) if not met]
        verdict = ("meets both conditions" if not missed else
                   f"no trial meets both conditions, this is the closest ({' and '.join(missed)} "
                   "condition missed)")
        fraction = ("" if self.speed_fraction is None else
                    f", {100 * self.speed_fraction:.0f} % of plain int8's speed")
        return (f"trial {self.row.number} (keep_fp32={list(self.row.keep_fp32)}): SVN "
                f"{self.row.svn:.4g} = {self.svn_ratio:.3f} x fp32's {self.fp32_svn:.4g} "
                f"(tolerance {tolerance}){fraction}: {verdict}")


def plain_int8(rows: Sequence[TrialRow]) -> TrialRow | None:
    """Plain int8_inc (every switch off), its speed the median of all its trials: NSGA-II
    samples it again, and one timing on a shared machine is noisy."""
    plain = [row for row in rows if not row.keep_fp32]
    if not plain:
        return None

    def middle(key: str) -> float | None:
        values = [getattr(row, key) for row in plain if getattr(row, key) is not None]
        return median(values) if values else None

    return replace(plain[0], speed=middle("speed"), speedup=middle("speedup"),
                   throughput=middle("throughput"), latency_ms=middle("latency_ms"))


def _speed_fraction(row: TrialRow, plain: TrialRow | None, speed: SearchSpeed) -> float | None:
    if plain is None:
        return None
    return plain.speed / row.speed if speed is SearchSpeed.latency else row.speed / plain.speed


def select(rows: Sequence[TrialRow], plain: TrialRow | None, fp32_svn: float,
           search: SearchConfig) -> Selection:
    """The chosen point (module docstring)."""

    def meets_physics(row: TrialRow) -> bool:
        return row.svn <= (1.0 + search.physics_tolerance) * fp32_svn

    def meets_speed(row: TrialRow) -> bool:
        if search.mode is SearchMode.single:
            return row.latency_ms <= search.latency_budget_ms
        fraction = _speed_fraction(row, plain, search.speed)
        return fraction is not None and fraction >= search.min_speed_fraction

    faster = _faster(search.speed)
    both = [row for row in rows if meets_physics(row) and meets_speed(row)]
    candidates = both or [row for row in rows if meets_speed(row)] or list(rows)
    if not candidates:
        return Selection(None, plain, fp32_svn, None, None, False, False)
    row = min(candidates, key=lambda r: (r.distance, -faster(r)))
    return Selection(row, plain, fp32_svn, row.svn / fp32_svn,
                     _speed_fraction(row, plain, search.speed), meets_physics(row),
                     meets_speed(row))


def table_rows(rows: Sequence[TrialRow], front: Sequence[TrialRow],
               chosen: TrialRow | None, fp32_svn: float) -> list[dict[str, object]]:
    """Rows for a Markdown table (calo.formatting.markdown_table), front trials marked."""
    on_front = {row.number for row in front}
    return [{"trial": row.number,
             "front": "yes" if row.number in on_front else "",
             "chosen": "yes" if chosen is not None and row.number == chosen.number else "",
             "fp32 nodes": len(row.keep_fp32), "SVN": row.svn, "SVN / fp32": row.svn / fp32_svn,
             "pixel": row.pixel, "speed-up": row.speedup, "showers/s": row.throughput,
             "latency ms": row.latency_ms, "keep_fp32": ",".join(row.keep_fp32) or "(none)"}
            for row in rows]


@dataclass(frozen=True)
class Summary:
    """A study's completed trials, their front and the chosen point."""

    rows: list[TrialRow]
    front: list[TrialRow]
    selection: Selection


def summarize_study(study: optuna.Study, search: SearchConfig) -> Summary:
    """The summary of everything the study holds (every process's trials)."""
    fp32_svn = study.user_attrs.get(FP32_SVN_ATTR)
    if fp32_svn is None:
        raise CaloError(f"study {study.study_name} holds no fp32 baseline yet: run the search")
    rows = trial_rows(study.get_trials(deepcopy=False), search)
    plain = plain_int8(rows)
    front = pareto_front(rows, search.speed)
    return Summary(rows, front, select(rows, plain, fp32_svn, search))
