"""The README's physics table: the paper's Table 3 (shower-shape moments), Table 4 (single
validation number) and Table 5 (pixel-wise difference) for the reference floor, fp32 and each
precision, from the metrics the runs logged, with the paper's published values in brackets.

    render_table({"fp32": metrics_of_fp32_run, "int8_inc": metrics_of_int8_run, ...})

takes each run's metrics (``physics/...`` keys, as :meth:`ValidationResult.metrics` names
them), so it works on ``MlflowClient().get_run(id).data.metrics`` as well as on a fresh result.
"""

from __future__ import annotations

from collections.abc import Mapping

from calo.formatting import DASH, number, with_error
from calo.published import PAPER, PUBLISHED_SHAPES

__all__ = ["SHAPES", "render_run_table", "render_table"]

_COLUMNS = ("sample", "y mean", "y std", "z mean", "z std", "SVN vs ref.", "3DGAN metric vs ref.",
            "separation vs ref.", "SVN vs fp32", "pixel-wise sum abs diff [GeV]",
            "pixel-wise / ECAL")
SHAPES = tuple(PUBLISHED_SHAPES)  # Table 3's columns: y_mean, y_std, z_mean, z_std


def render_table(runs: Mapping[str, Mapping[str, float]],
                 labels: Mapping[str, str] | None = None) -> str:
    """A Markdown table from the metrics of one run per precision (keys: precision names).

    The reference and fp32 rows come from the fp32 run when there is one, else from the first
    run (every run measures both); the reference row's distances are its floor (one half of
    the reference against the other). Paper values follow ours in brackets. ``labels``
    renames rows (``{"fp32": "fp32 (untrained)"}``).
    """
    labels = labels or {}
    if not runs:
        raise ValueError("render_table needs the metrics of at least one run")
    baseline = runs.get("fp32") or next(iter(runs.values()))
    rows = [
        _row(labels.get("reference", "reference (distances: half vs half)"), baseline,
             "reference", "floor", PAPER["reference"]),
        _row(labels.get("fp32", "fp32"), baseline, "fp32", "fp32", PAPER["fp32"]),
    ]
    rows += [_row(labels.get(precision, precision), metrics, "engine", "engine",
                  PAPER.get(precision, {}))
             for precision, metrics in runs.items() if precision != "fp32"]
    lines = ["| " + " | ".join(_COLUMNS) + " |", "|" + "---|" * len(_COLUMNS), *rows]
    return "\n".join(lines) + "\n"


def render_run_table(metrics: Mapping[str, float], precision: str) -> str:
    """The table of a single run."""
    return render_table({precision: metrics})


def _row(label: str, metrics: Mapping[str, float], sample: str, distances: str,
         paper: Mapping[str, float]) -> str:
    """Table-3 moments of ``sample``; SVN, 3DGAN metric and mean separation power of the
    ``distances`` comparison; SVN and pixel-wise difference against fp32 where measured."""
    def get(key: str) -> float | None:
        return metrics.get(f"physics/{key}")

    cells = [label]
    for shape in SHAPES:
        moment = with_error(get(f"{sample}/{shape}"), get(f"{sample}/{shape}_err"))
        cells.append(_with_paper(moment, paper.get(shape), "{:.2f}"))
    cells.append(_with_paper(number(get(f"{distances}/svn")), paper.get("svn"), "{:.3f}"))
    cells.append(number(get(f"{distances}/analysis_metric")))
    cells.append(number(get(f"{distances}/sep_mean")))
    cells.append(number(get("engine_vs_fp32/svn")) if sample == "engine" else DASH)
    pixel = (with_error(get("engine_vs_fp32/pixel_abs_mean"), get("engine_vs_fp32/pixel_abs_std"))
             if sample == "engine" else DASH)
    paper_pixel = (f"{paper['pixel_abs_mean']:.3f} ± {paper['pixel_abs_std']:.3f}"
                   if "pixel_abs_mean" in paper else None)
    cells.append(f"{pixel} ({paper_pixel})" if paper_pixel else pixel)
    cells.append(with_error(get("engine_vs_fp32/pixel_rel_mean"),
                            get("engine_vs_fp32/pixel_rel_std"))
                 if sample == "engine" else DASH)
    return "| " + " | ".join(cells) + " |"


def _with_paper(text: str, paper: float | None, style: str) -> str:
    return text if paper is None else f"{text} ({style.format(paper)})"
