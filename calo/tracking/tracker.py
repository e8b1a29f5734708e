"""One MLflow run per job: config as params, choices and machine as tags, a failed job marked
FAILED with its error and everything it logged before."""

from __future__ import annotations

import functools
import logging
import time
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
from calo.tracking.tags import PARENT_TAG, git_tags, hydra_tags

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
    """Thin facade over one MLflow run, so stages never import mlflow. It is bound to its run
    (through an ``MlflowClient``), whatever run is active elsewhere: a search or a benchmark
    keeps its parent's tracker while its children's runs log through their own. With
    ``run_id=None`` (tracking off) it records nothing."""

    def __init__(self, run_id: str | None, tracking_uri: str | None = None) -> None:
        self.run_id = run_id
        self._uri = tracking_uri

    @functools.cached_property
    def _client(self):
        import mlflow

        return mlflow.MlflowClient(self._uri)

    @_recording
    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        self._client.log_batch(self.run_id, params=[Param(key, _param_value(value))
                                                    for key, value in params.items()])

    @_recording
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._client.log_batch(self.run_id, metrics=[Metric(key, float(value), now, step or 0)
                                                     for key, value in metrics.items()])

    @_recording
    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        self._client.log_batch(self.run_id,
                               tags=[RunTag(key, str(value)) for key, value in tags.items()])

    @_recording
    def log_text(self, text: str, artifact_file: str) -> None:
        self._client.log_text(self.run_id, text, artifact_file)

    @_recording
    def log_dict(self, data: Mapping[str, Any], artifact_file: str) -> None:
        self._client.log_dict(self.run_id, dict(data), artifact_file)

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        """Log a matplotlib figure and close it, tracked or not (figures left open pile up in
        memory)."""
        import matplotlib.pyplot as plt

        if self.run_id:
            self._client.log_figure(self.run_id, figure, artifact_file)
        plt.close(figure)

    @_recording
    def log_artifacts(self, folder: str | Path, artifact_path: str | None = None) -> None:
        self._client.log_artifacts(self.run_id, str(folder), artifact_path)

    @_recording
    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self._client.log_artifact(self.run_id, str(path), artifact_path)

    @contextmanager
    def active(self) -> Iterator[None]:
        """This run as MLflow's active run, for the few MLflow calls that log only there
        (``log_model``); it stays RUNNING afterwards, and whatever run was active before is
        active again."""
        import mlflow

        current = mlflow.active_run()
        if current is not None and current.info.run_id == self.run_id:
            yield
            return
        mlflow.start_run(run_id=self.run_id, nested=current is not None)
        try:
            yield
        finally:
            mlflow.end_run()  # ends the fluent handle, and marks the run FINISHED: undo that
            self._client.update_run(self.run_id, status="RUNNING")

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
            with self.active():
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
    parent_run_id: str | None = None,
) -> Iterator[Tracker]:
    """Start a run that records the config, the machine and the code version; end it FINISHED,
    or FAILED with the error as a tag (everything logged until then is kept). A job of a
    multirun becomes a child of its sweep's parent run (calo.tracking.sweep).

    ``resume_run_id`` continues an earlier run (its params are already there and immutable);
    ``parent_run_id`` makes the new run a child of that one (the MLflow UI nests it), while
    the parent's tracker stays open and usable.
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
    client = mlflow.MlflowClient()
    with terminate_as_interrupt():
        if resume_run_id is None:
            run_tags = {**owner_tags(), **({PARENT_TAG: parent_run_id} if parent_run_id else {})}
            run_id = client.create_run(experiment_id, run_name=tracking.run_name or run_name,
                                       tags=run_tags).info.run_id
            tracker = Tracker(run_id, mlflow.get_tracking_uri())
        else:
            run_id = resume_run_id
            client.update_run(run_id, status="RUNNING")
            tracker = Tracker(run_id, mlflow.get_tracking_uri())
            tracker.set_tags(owner_tags())
        status = "FAILED"
        try:
            with Heartbeat(client, run_id):
                tracker.set_tags({**detect_machine().as_tags(), **git_tags(), **hydra_tags(),
                                  **sweep_job_tags(tracking), **(tags or {})})
                if resume_run_id is None:
                    container = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
                    tracker.log_params(flatten(container))
                tracker.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
                log.info("MLflow run %s in %s", run_id, mlflow.get_tracking_uri())
                yield tracker
            status = "FINISHED"
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        except BaseException as error:
            tracker.set_tags({"error": one_line(error, 5000)})
            raise
        finally:
            client.set_terminated(run_id, status)
