"""The tags every calo run carries, apart from the values it measures: where its code came from
(git), how it was composed (Hydra's choices and overrides), and whose child it is."""

from __future__ import annotations

import subprocess

from calo.paths import PROJECT_ROOT

__all__ = ["PARENT_TAG", "git_tags", "hydra_tags"]

PARENT_TAG = "mlflow.parentRunId"  # MLflow's own: the UI nests children under their parent


def git_tags() -> dict[str, str]:
    def git(*args: str) -> str:
        result = subprocess.run(["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True)
        return result.stdout.strip() if result.returncode == 0 else ""

    commit = git("rev-parse", "HEAD")
    return {"git/commit": commit or "unknown", "git/dirty": str(bool(git("status", "--porcelain")))}


def hydra_tags() -> dict[str, str]:
    """Config-group choices and command-line overrides, when running under Hydra."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return {}
    hydra_cfg = HydraConfig.get()
    tags = {f"choice/{group}": str(option) for group, option in hydra_cfg.runtime.choices.items()
            if not group.startswith("hydra") and option is not None}
    tags["overrides"] = " ".join(hydra_cfg.overrides.task) or "(none)"
    return tags
