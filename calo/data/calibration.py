"""The real EleEscan sample's published statistics, and how the simulator reproduces them.

    python -m calo.data.calibration [--showers 4000] [--fit] [--write docs/data.md]

prints the fitted statistics (published against simulated), the held-out checks that were not
fitted (``calo.data.simulator_checks``) and, with ``--fit``, the tuned constants fitted again by
least squares (``calo.data.simulator_fit``) beside the shipped ones. ``--write`` puts the same
Markdown between the file's ``<!-- calibration:begin -->`` and ``<!-- calibration:end -->``.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from calo.published import PUBLISHED_SHAPES

if TYPE_CHECKING:
    from calo.data.simulator import ShowerParameters
    from calo.data.simulator_checks import HeldOutChecks
    from calo.data.simulator_fit import CalibrationFit

__all__ = ["CalibrationReport", "HeldOutRow", "calibration_report", "format_report",
           "heldout_rows", "write_between_markers"]

BEGIN, END = "<!-- calibration:begin -->", "<!-- calibration:end -->"


@dataclass(frozen=True)
class HeldOutRow:
    """One held-out check: what physics expects (a value, a range, or None) and what the
    simulator gives; ``error`` its statistical error where known."""

    quantity: str
    expected: tuple[float, float] | None  # (low, high); equal for a single value
    source: str
    simulated: float
    error: float | None = None
    percent: bool = False  # shown as a percentage


@dataclass(frozen=True)
class CalibrationReport:
    """Everything the command shows: the fitted statistics at the shipped constants, the
    held-out checks, and a redone fit if asked."""

    shipped: ShowerParameters
    n_showers: int
    n_fixed: int
    fitted_rows: list[tuple[str, float, float]]  # (statistic, published, simulated)
    heldout: HeldOutChecks
    heldout_rows: list[HeldOutRow]
    fit: CalibrationFit | None = None


def heldout_rows(checks: HeldOutChecks, range_statistics: dict[str, float],
                 energy_min: float = 100.0, energy_max: float = 500.0) -> list[HeldOutRow]:
    """The held-out checks as rows: x moments over the calibration range against the published
    y ones (the real sample is symmetric), t_max against ln E, and the resolution terms."""
    from calo.data.simulator_checks import PDG_ELECTRON_OFFSET_X0, STOCHASTIC_RANGE

    span = f"{energy_min:g}-{energy_max:g} GeV"
    energies = [point.energy for point in checks.points]
    low, high = min(energies), max(energies)
    pdg = f"PDG: ln(E/E_c) - {-PDG_ELECTRON_OFFSET_X0:g}"
    rows = [HeldOutRow(f"x mean (cells), {span}", (PUBLISHED_SHAPES["y_mean"],) * 2,
                       "published y (symmetry)", range_statistics["x_mean"]),
            HeldOutRow(f"x std (cells), {span}", (PUBLISHED_SHAPES["y_std"],) * 2,
                       "published y (symmetry)", range_statistics["x_std"]),
            HeldOutRow(f"t_max slope (X0 per unit ln E), {low:g}-{high:g} GeV", (1.0, 1.0),
                       pdg, checks.peak.slope, checks.peak.slope_error)]
    for energy in (low, 100.0, high):
        rows.append(HeldOutRow(f"t_max at {energy:g} GeV (X0)",
                               (checks.expected_peak_x0(energy),) * 2, pdg,
                               checks.peak.at(energy)))
    rows.append(HeldOutRow("stochastic term a (sigma/E = a/sqrt(E) (+) c)", STOCHASTIC_RANGE,
                           "showers.md, Si-W", checks.stochastic, percent=True))
    rows.append(HeldOutRow("constant term c", None, "", checks.constant, percent=True))
    return rows


def calibration_report(n_showers: int = 4000, seed: int = 11, *, n_fixed: int | None = None,
                       heldout_showers: int = 200, fit_showers: int | None = None,
                       workers: int = 1, progress: bool = False) -> CalibrationReport:
    """The statistics the constants were fitted to, at the shipped constants, on ``n_showers``
    over 100-500 GeV and ``n_fixed`` (a tenth of them) at each fixed energy; the held-out checks
    on ``heldout_showers`` per energy; with ``fit_showers``, the fit redone on that many."""
    from calo.data.simulator import ShowerParameters
    from calo.data.simulator_checks import heldout_checks
    from calo.data.simulator_fit import (
        CalibrationSample,
        SimulatedStatistics,
        calibration_targets,
        fit_simulator,
    )

    shipped = ShowerParameters()
    n_fixed = n_fixed or max(n_showers // 10, 2)
    sample = CalibrationSample(n_showers=n_showers, n_fixed=n_fixed, seed=seed, workers=workers)
    targets = calibration_targets(sample)
    achieved = SimulatedStatistics(sample)(shipped)
    checks = heldout_checks(shipped, heldout_showers, workers=workers)
    fit = None
    if fit_showers:
        fit_sample = CalibrationSample(n_showers=fit_showers, n_fixed=max(fit_showers // 10, 2),
                                       seed=seed, workers=workers)
        fit = fit_simulator(calibration_targets(fit_sample), fit_sample, progress=progress)
    return CalibrationReport(shipped, n_showers, n_fixed,
                             [(key, target, achieved[key]) for key, target in targets.items()],
                             checks, heldout_rows(checks, achieved, sample.energy_min,
                                                  sample.energy_max), fit)


# ---- printing: the report as Markdown ------------------------------------------------------

_LABELS = {"y_mean": "y mean (cells)", "y_std": "y std", "z_mean": "z mean", "z_std": "z std"}


def _statistic(key: str, value: float) -> str:
    return f"{100 * value:.3f} %" if key.startswith("sf_") else f"{value:#.4g}"


def _percent(fraction: float) -> str:
    """A relative deviation in percent, with no "-0.00 %"."""
    return f"{100 * fraction:+.2f} %" if round(100 * fraction, 2) else "0.00 %"


def _label(key: str) -> str:
    return _LABELS.get(key) or f"ECAL/Ep at {key.removeprefix('sf_')} GeV"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join([*lines, *("| " + " | ".join(row) + " |" for row in rows)])


def _expected(row: HeldOutRow) -> str:
    if row.expected is None:
        return "-"
    low, high = row.expected
    if row.percent:
        return f"{100 * low:.0f}-{100 * high:.0f} %"
    return f"{low:#.4g}" if low == high else f"{low:#.4g}-{high:#.4g}"


def _simulated(row: HeldOutRow) -> str:
    value = f"{100 * row.simulated:.1f} %" if row.percent else f"{row.simulated:#.4g}"
    return value + (f" ± {row.error:.2g}" if row.error is not None else "")


def _deviation(row: HeldOutRow) -> str:
    if row.expected is None:
        return "-"
    low, high = row.expected
    if low <= row.simulated <= high:
        return "within" if low != high else _percent(0.0)
    edge = low if row.simulated < low else high
    return _percent(row.simulated / edge - 1) + (" (outside)" if low != high else "")


def format_report(report: CalibrationReport) -> str:
    """The report as Markdown: the fit (if redone), the fitted statistics, the held-out checks
    and the shapes at fixed energies."""
    from calo.data.simulator_fit import FIT_START, FITTED

    parts = []
    if report.fit is not None:
        fit, start = report.fit, FIT_START
        rows = [(name, f"{getattr(start, name):.4g}", f"{getattr(fit.fitted, name):.4g}",
                 f"{getattr(report.shipped, name):.4g}",
                 f"{getattr(fit.fitted, name) - getattr(report.shipped, name):+.3g}")
                for name in FITTED]
        parts.append(
            f"Fit redone (least squares of the relative deviations from the {len(fit.targets)} "
            f"published statistics, {fit.simulations} samples simulated, "
            f"{'converged' if fit.converged else 'not converged'}: {fit.message.rstrip('.')}; "
            f"cost {fit.cost:.2g}):\n\n"
            + _table(["constant", "start", "fitted", "shipped", "fitted - shipped"], rows))
    rows = [(_label(key), _statistic(key, target), _statistic(key, achieved),
             _percent(achieved / target - 1)) for key, target, achieved in report.fitted_rows]
    parts.append(f"Fitted statistics at the shipped constants ({report.n_showers:,} showers over "
                 f"100-500 GeV, {report.n_fixed:,} at each fixed energy):\n\n"
                 + _table(["quantity", "published (real sample)", "simulated", "deviation"],
                          rows))
    rows = [(row.quantity, _expected(row), row.source or "-", _simulated(row), _deviation(row))
            for row in report.heldout_rows]
    n = report.heldout.points[0].n_showers
    parts.append(f"Held-out checks, not fitted ({n:,} showers at each energy):\n\n"
                 + _table(["quantity", "expected", "from", "simulated", "deviation"], rows))
    checks = report.heldout
    rows = [(f"{p.energy:g}", f"{p.x_std:.3f}", f"{p.y_std:.3f}", f"{p.z_mean:.2f}",
             f"{p.z_std:.2f}", f"{p.peak_x0:.2f}", f"{checks.expected_peak_x0(p.energy):.2f}",
             f"{100 * p.resolution:.2f} ± {100 * p.resolution_error:.2f} %")
            for p in checks.points]
    parts.append("Shapes at fixed energies (cells; t_max in X0):\n\n"
                 + _table(["Ep (GeV)", "x std", "y std", "z mean", "z std", "t_max",
                           "t_max PDG", "sigma(ECAL)/ECAL"], rows))
    return "\n\n".join(parts) + "\n"


def write_between_markers(path: Path, block: str) -> None:
    """Replace what lies between the file's calibration markers by ``block``."""
    text = path.read_text()
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.DOTALL)
    if not pattern.search(text):
        raise SystemExit(f"error: {path} has no {BEGIN} ... {END} markers")
    path.write_text(pattern.sub(lambda _: f"{BEGIN}\n{block}{END}", text, count=1))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m calo.data.calibration",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--showers", type=int, default=4000,
                        help="showers over 100-500 GeV for the fitted statistics (a tenth of "
                             "them at each fixed energy)")
    parser.add_argument("--heldout-showers", type=int, default=200,
                        help="showers at each energy of the held-out checks")
    parser.add_argument("--fit", action="store_true",
                        help="fit the tuned constants again (minutes) and show them beside "
                             "the shipped ones")
    parser.add_argument("--fit-showers", type=int, default=1500,
                        help="showers over 100-500 GeV the fit simulates at each step")
    parser.add_argument("--workers", type=int, default=1, help="simulation processes")
    parser.add_argument("--write", type=Path, metavar="FILE",
                        help="also write the report between FILE's calibration markers")
    args = parser.parse_args(argv)
    report = calibration_report(args.showers, heldout_showers=args.heldout_showers,
                                fit_showers=args.fit_showers if args.fit else None,
                                workers=args.workers, progress=True)
    text = format_report(report)
    print(text, end="")
    if args.write:
        write_between_markers(args.write, text)
        print(f"wrote {args.write}")


if __name__ == "__main__":
    main()
