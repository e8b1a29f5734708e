"""A searched fallback set as a precision option (``conf/precision/<name>.yaml``), and as the
overrides that reproduce it with ``precision=int8_inc`` or ``int8_ov``."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import hydra
import yaml
from omegaconf import DictConfig

from calo.cli import exit_on_user_error
from calo.config import Backend, PrecisionConfig, to_settings
from calo.errors import CaloError
from calo.paths import CONFIG_DIR
from calo.search.settings import SearchJobConfig, SearchMode, SearchPhysics, SearchSpeed
from calo.search.study import SETUP_BEFORE_PRECISION

__all__ = ["MARKER", "main", "option_text", "reproduce_overrides", "save_option",
           "save_study_option"]

# The first line of every option file the search writes: only such files are overwritten.
MARKER = "# Written by calo.search"
_NAME = re.compile(r"[a-z][a-z0-9_]*")


def _calibration_overrides(precision: PrecisionConfig) -> list[str]:
    """``precision.*`` overrides for the calibration settings (and int8_ov's own two) that
    differ from those of the precision option named after the backend."""
    default = _backend_option(precision.backend)
    overrides = []
    for key in ("calibration_size", "calibration_seed", "rewrite", "activations", "float_dtype"):
        if getattr(precision, key) != getattr(default, key):
            overrides.append(f"precision.{key}={str(getattr(precision, key)).lower()}")
    if precision.calibration_energy != default.calibration_energy:
        energy = ",".join(f"{value:g}" for value in precision.calibration_energy)
        overrides.append(f"precision.calibration_energy=[{energy}]")
    return overrides


def _backend_option(backend: Backend, folder: Path = CONFIG_DIR / "precision"
                    ) -> PrecisionConfig:
    """The settings of ``conf/precision/<backend>.yaml``, the option ``precision=<backend>``
    composes (a plain YAML file over the schema)."""
    fields = yaml.safe_load((folder / f"{backend.value}.yaml").read_text())
    fields.pop("defaults", None)
    return PrecisionConfig(**fields)


def reproduce_overrides(precision: PrecisionConfig, keep_fp32: Sequence[str]) -> str:
    """The command-line overrides that rebuild a trial's engine with precision=<its backend>."""
    return " ".join([f"precision={precision.backend.value}",
                     f"precision.keep_fp32=[{','.join(keep_fp32)}]",
                     *_calibration_overrides(precision)])


def option_text(name: str, keep_fp32: Sequence[str], setup: Mapping[str, Any],
                note: str) -> str:
    """The YAML of a precision option: the study's backend (and activations) with ``keep_fp32``
    and the study's calibration settings (``search_setup()``); ``note`` says where it comes
    from (a study recorded before its setup named the precision: SETUP_BEFORE_PRECISION)."""
    setup = {**SETUP_BEFORE_PRECISION, **setup}
    calibration = setup["calibration"]
    energy = ", ".join(f"{value:g}" for value in calibration["energy"])
    activations, float_dtype = setup["activations"], setup["float_dtype"]
    return "\n".join([
        f"{MARKER}: {note}",
        "defaults:",
        "  - precision_schema",
        "  - _self_",
        "",
        f"name: {name}",
        f"backend: {setup['backend']}",
        *([f"activations: {activations}"] if activations != PrecisionConfig.activations else []),
        *([f"float_dtype: {float_dtype}"] if float_dtype != PrecisionConfig.float_dtype else []),
        f"calibration_size: {calibration['size']}",
        f"calibration_energy: [{energy}]",
        f"calibration_seed: {calibration['seed']}",
        f"rewrite: {str(calibration['rewrite']).lower()}",
        f"keep_fp32: [{', '.join(keep_fp32)}]",
        "",
    ])


def save_option(name: str, text: str, folder: Path = CONFIG_DIR / "precision") -> Path:
    """Write ``<folder>/<name>.yaml``; an existing option not written by the search is kept
    and refused with a one-line error."""
    if not _NAME.fullmatch(name):
        raise CaloError(f"search.save_as={name!r}: a precision option name is lower-case "
                        "letters, digits and underscores, starting with a letter")
    path = folder / f"{name}.yaml"
    if path.exists() and not path.read_text().startswith(MARKER):
        raise CaloError(f"search.save_as={name}: {path} exists and was not written by the "
                        "search; choose another name")
    path.write_text(text)
    return path


def save_study_option(settings: SearchJobConfig,
                      folder: Path = CONFIG_DIR / "precision") -> Path:
    """``python -m calo.search.export``: write a trial of a finished (or running) study, the chosen
    point unless ``search.save_trial`` names one, as ``<folder>/<search.save_as>.yaml``."""
    from dataclasses import replace

    import optuna

    from calo.search.pareto import summarize_study
    from calo.search.study import SETUP_ATTR, open_storage, safe_url, storage_url, study_name

    search = settings.search
    if not search.save_as:
        raise CaloError("python -m calo.search.export writes a precision option: give "
                        "search.save_as=<name> (and search.save_trial=<number>, else the "
                        "chosen point)")
    url, name = storage_url(search, settings.tracking), study_name(settings)
    try:
        study = optuna.load_study(study_name=name, storage=open_storage(url, search.heartbeat_s))
    except KeyError as error:
        raise CaloError(f"no study {name!r} in {safe_url(url)}: run the search first, or name "
                        "it with search.study=<name>") from error
    setup = study.user_attrs[SETUP_ATTR]
    measured = replace(search, physics=SearchPhysics(setup["physics"]),
                       speed=SearchSpeed(setup["speed"]), mode=SearchMode(setup["mode"]),
                       latency_budget_ms=setup["latency_budget_ms"])
    summary = summarize_study(study, measured)
    rows = {row.number: row for row in summary.rows}
    number = summary.selection.row.number if search.save_trial is None else search.save_trial
    if number not in rows:
        raise CaloError(f"study {name!r} has no completed trial {number}; completed: "
                        f"{sorted(rows) or 'none'}")
    row = rows[number]
    note = (f"study {name}, trial {number}: SVN {row.svn:.4g}, pixel {row.pixel:.4g}, "
            f"{row.throughput:.0f} showers/s")
    return save_option(search.save_as, option_text(search.save_as, row.keep_fp32, setup, note),
                       folder)


def _export(cfg: DictConfig) -> None:
    path = save_study_option(to_settings(cfg))
    print(f"wrote {path}: run it with precision={path.stem}")


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="search")
def main(cfg: DictConfig) -> None:
    """``python -m calo.search.export search.save_as=int8_inc_best [search.save_trial=N]``: a
    trial of a search's study (the chosen point unless search.save_trial names one) as the
    precision option conf/precision/<search.save_as>.yaml, found as the search found it."""
    exit_on_user_error(_export, cfg)


if __name__ == "__main__":
    main()
