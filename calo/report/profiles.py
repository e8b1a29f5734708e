"""Average shower profiles as a run artifact (``physics/profiles.json``), so the report can
overlay the samples of several runs (the paper's Figures 5 and 6) without their showers.

    {"unit": "GeV per cell", "samples": {"reference": {"y": {"mean": [...], "error": [...]}}}}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from calo.physics.shapes import Profile
from calo.physics.validate import ValidationResult

__all__ = ["PROFILES_ARTIFACT", "Profile", "profile_record", "profiles_from_record"]

PROFILES_ARTIFACT = "physics/profiles.json"


def profile_record(result: ValidationResult) -> dict[str, Any]:
    """Each distinct sample's average profile per axis, with its standard error (GeV)."""
    samples = {}
    for name, summary in result.samples.items():
        if name == "engine" and result.engine_is_fp32:
            continue  # the fp32 engine: the same sample as fp32, stored once
        samples[name] = {axis: {"mean": mean.tolist(), "error": error.tolist()}
                         for axis, (mean, error) in summary.profiles.items()}
    return {"unit": "GeV per cell", "samples": samples}


def profiles_from_record(record: Mapping[str, Any]) -> dict[str, dict[str, Profile]]:
    """{sample: {axis: (mean, error)}} from :func:`profile_record`'s output; for an fp32 run
    the ``engine`` entry is its ``fp32`` one."""
    samples = {
        name: {axis: (np.asarray(values["mean"], dtype=np.float64),
                      np.asarray(values["error"], dtype=np.float64))
               for axis, values in axes.items()}
        for name, axes in record.get("samples", {}).items()
    }
    if "engine" not in samples and "fp32" in samples:
        samples["engine"] = samples["fp32"]
    return samples
