"""One MLflow run per job: config as params, choices and machine as tags, a failed job marked
FAILED with its error and everything it logged before."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from calo.cli import terminate_as_interrupt
from calo.config import TrackingConfig
from calo.errors import one_line
from calo.hw import detect_machine
from calo.tracking.owner import Heartbeat, owner_tags
from calo.tracking.store import configure_store
from calo.tracking.sweep import sweep_job_tags
from calo.tracking.tags import git_tags, hydra_tags

__all__ = ["Tracker", "flatten", "tracked_run"]

log = logging.getLogger(__name__)


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists stay values."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _recording(method: Callable[..., Any]) -> Callable[..., Any]:
    """A Tracker method that does nothing when tracking is off."""

    @functools.wraps(method)
    def wrapper(self: Tracker, *args: Any, **kwargs: Any) -> Any:
        return method(self, *args, **kwargs) if self.run_id else None

    return wrapper


class Tracker:
    """Thin facade over the active MLflow run, so stages never import mlflow. With
    ``run_id=None`` (tracking off) it records nothing."""

    def __init__(self, run_id: str | None) -> None:
        self.run_id = run_id

    @_recording
    def log_params(self, params: Mapping[str, Any]) -> None:
        import mlflow

        mlflow.log_params({key: _param_value(value) for key, value in params.items()})

    @_recording
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        import mlflow

        mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)

    @_recording
    def set_tags(self, tags: Mapping[str, Any]) -> None:
        import mlflow

        mlflow.set_tags({key: str(value) for key, value in tags.items()})

    @_recording
    def log_text(self, text: str, artifact_file: str) -> None:
        import mlflow

        mlflow.log_text(text, artifact_file)

    @_recording
    def log_dict(self, data: Mapping[str, Any], artifact_file: str) -> None:
        import mlflow

        mlflow.log_dict(dict(data), artifact_file)

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        """Log a matplotlib figure and close it, tracked or not (figures left open pile up in
        memory)."""
        import matplotlib.pyplot as plt

        if self.run_id:
            import mlflow

            mlflow.log_figure(figure, artifact_file)
        plt.close(figure)

    @_recording
    def log_artifacts(self, folder: str | Path, artifact_path: str | None = None) -> None:
        import mlflow

        mlflow.log_artifacts(str(folder), artifact_path)

    @_recording
    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        import mlflow

        mlflow.log_artifact(str(path), artifact_path)

    @_recording
    def log_keras_model(self, model: Any, name: str, input_example: Any,
                        registered_name: str | None = None) -> str:
        """Log a Keras model as an MLflow model (with signature and input example) and
        register it under ``registered_name``; returns its model URI.

        MLflow pickles Keras' global custom objects beside the model
        (``global_custom_objects.cloudpickle``) whenever any are registered, as calo's EcalSum
        layer is; the generator needs none, and a registered model that holds a pickle is
        refused on loading (calo.tracking.registry), so they are hidden while it is logged."""
        import keras
        import mlflow
        from mlflow.models import infer_signature

        signature = infer_signature(input_example, model.predict(input_example, verbose=0))
        registered = keras.saving.get_custom_objects()
        hidden = dict(registered)
        registered.clear()
        try:
            info = mlflow.tensorflow.log_model(model, name=name, signature=signature,
                                               input_example=input_example,
                                               registered_model_name=registered_name)
        finally:
            registered.update(hidden)
        return info.model_uri


def _param_value(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 6000 else text[:5997] + "..."


@contextmanager
def tracked_run(
    cfg: DictConfig, tracking: TrackingConfig, run_name: str | None = None,
    tags: Mapping[str, str] | None = None, resume_run_id: str | None = None,
) -> Iterator[Tracker]:
    """Start a run that records the config, the machine and the code version; end it FINISHED,
    or FAILED with the error as a tag (everything logged until then is kept). A job of a
    multirun becomes a child of its sweep's parent run (calo.tracking.sweep).

    ``resume_run_id`` continues an earlier run (its params are already there and immutable).
    With tracking off, the tracker records nothing. SIGTERM ends the run KILLED, as Ctrl-C
    does; the run records its owner process and a heartbeat, so that a run whose process was
    killed outright is marked KILLED by the next one to open the store
    (:mod:`calo.tracking.owner`).
    """
    if not tracking.enabled:
        yield Tracker(None)
        return
    import mlflow

    experiment_id = configure_store(tracking)
    with terminate_as_interrupt():
        run = mlflow.start_run(run_id=resume_run_id, experiment_id=experiment_id,
                               run_name=None if resume_run_id else tracking.run_name or run_name,
                               tags=owner_tags())
        tracker = Tracker(run.info.run_id)
        status = "FAILED"
        try:
            with Heartbeat(mlflow.MlflowClient(), run.info.run_id):
                tracker.set_tags({**detect_machine().as_tags(), **git_tags(), **hydra_tags(),
                                  **sweep_job_tags(tracking), **(tags or {})})
                if resume_run_id is None:
                    container = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
                    tracker.log_params(flatten(container))
                tracker.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
                log.info("MLflow run %s in %s", run.info.run_id, mlflow.get_tracking_uri())
                yield tracker
            status = "FINISHED"
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        except BaseException as error:
            mlflow.set_tag("error", one_line(error, 5000))
            raise
        finally:
            mlflow.end_run(status=status)
