"""The README's physics table: the paper's Table 3 (shower-shape moments), Table 4 (single
validation number) and Table 5 (pixel-wise difference) for the reference floor, fp32 and each
precision, from the metrics the runs logged, with the paper's published values in brackets.

    render_table({"fp32": metrics_of_fp32_run, "int8_inc": metrics_of_int8_run, ...})

takes each run's metrics (``physics/...`` keys, as :meth:`ValidationResult.metrics` names
them), so it works on ``MlflowClient().get_run(id).data.metrics`` as well as on a fresh result.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from calo.data.calibration import PUBLISHED_SHAPES

__all__ = ["PAPER", "render_run_table", "render_table"]

# The paper's values: Table 3 (energy-weighted mean and std of the average profile, cells),
# Table 4 (MSE-based single validation number: the paper's own definition, not ours) and
# Table 5 (pixel-wise mean and std, units not stated).
PAPER: dict[str, dict[str, float]] = {
    "reference": dict(PUBLISHED_SHAPES),
    "fp32": {"y_mean": 12.02, "y_std": 1.46, "z_mean": 13.81, "z_std": 4.50, "svn": 0.061},
    "int8_inc": {"y_mean": 12.03, "y_std": 1.45, "z_mean": 13.91, "z_std": 4.48, "svn": 0.053,
                 "pixel_abs_mean": 1.550, "pixel_abs_std": 0.191},
    "fp16_tflite": {"y_mean": 12.05, "y_std": 1.13, "z_mean": 13.78, "z_std": 4.50,
                    "svn": 0.254, "pixel_abs_mean": 0.133, "pixel_abs_std": 0.291},
    "int8_tflite": {"y_mean": 12.10, "y_std": 1.19, "z_mean": 14.25, "z_std": 4.62,
                    "svn": 0.340, "pixel_abs_mean": 4.054, "pixel_abs_std": 0.721},
}

_HEADER = ("| sample | y mean | y std | z mean | z std | SVN vs reference | SVN vs fp32 "
           "| pixel-wise sum abs diff [GeV] | pixel-wise / ECAL |")
_SHAPES = ("y_mean", "y_std", "z_mean", "z_std")


def render_table(runs: Mapping[str, Mapping[str, float]]) -> str:
    """A Markdown table from the metrics of one run per precision (keys: precision names).

    The reference and fp32 rows come from the fp32 run when there is one, else from the first
    run (every run measures both). Each value is followed by the paper's in brackets.
    """
    if not runs:
        raise ValueError("render_table needs the metrics of at least one run")
    baseline = runs.get("fp32") or next(iter(runs.values()))
    rows = [
        _row("reference, half vs half (floor)", baseline, "reference",
             svn=baseline.get("physics/floor/svn"), paper=PAPER["reference"]),
        _row("fp32 vs reference", baseline, "fp32", svn=baseline.get("physics/fp32/svn"),
             paper=PAPER["fp32"]),
    ]
    for precision, metrics in runs.items():
        if precision != "fp32":
            rows.append(_row(f"{precision} vs reference / vs fp32", metrics, "engine",
                             svn=metrics.get("physics/engine/svn"),
                             paper=PAPER.get(precision, {}), compared_to_fp32=True))
    return "\n".join([_HEADER, "|" + "---|" * 9, *rows]) + "\n"


def render_run_table(metrics: Mapping[str, float], precision: str) -> str:
    """The table of a single run."""
    return render_table({precision: metrics})


def _row(label: str, metrics: Mapping[str, float], sample: str, svn: float | None,
         paper: Mapping[str, float], compared_to_fp32: bool = False) -> str:
    cells = [label]
    for shape in _SHAPES:
        value = metrics.get(f"physics/{sample}/{shape}")
        error = metrics.get(f"physics/{sample}/{shape}_err")
        cells.append(_with_paper(_value_and_error(value, error, "{:.3f}"), paper.get(shape)))
    cells.append(_with_paper(_number(svn), paper.get("svn"), "{:.3f}"))
    pair = "physics/engine_vs_fp32"
    if compared_to_fp32 and f"{pair}/svn" in metrics:
        cells.append(_number(metrics[f"{pair}/svn"]))
        absolute = _value_and_error(metrics[f"{pair}/pixel_abs_mean"],
                                    metrics[f"{pair}/pixel_abs_std"], "{:.3g}")
        paper_abs = paper.get("pixel_abs_mean")
        paper_text = (f"{paper_abs:.3f} ± {paper['pixel_abs_std']:.3f}"
                      if paper_abs is not None else None)
        cells.append(f"{absolute} ({paper_text})" if paper_text else absolute)
        cells.append(_value_and_error(metrics[f"{pair}/pixel_rel_mean"],
                                      metrics[f"{pair}/pixel_rel_std"], "{:.3g}"))
    else:
        cells.extend(["—", "—", "—"])
    return "| " + " | ".join(cells) + " |"


def _number(value: float | None) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value:.3g}"


def _value_and_error(value: float | None, error: float | None, style: str) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    if error is None or not math.isfinite(error):
        return style.format(value)
    return f"{style.format(value)} ± {style.format(error)}"


def _with_paper(text: str, paper: float | None, style: str = "{:.2f}") -> str:
    return text if paper is None else f"{text} ({style.format(paper)})"
