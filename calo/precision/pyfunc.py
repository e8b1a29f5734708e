"""Engines in MLflow: a saved calo engine logged as a pyfunc model and registered in the model
registry.

The registered model wraps the saved engine folder (``Engine.save``); its code is
``pyfunc_code.py`` (MLflow "models from code", nothing pickled), which loads the folder with
:func:`calo.precision.load_engine` (calo must be installed where it is loaded):

    model = mlflow.pyfunc.load_model("models:/calo-int8-search/1")
    showers = model.predict(np.hstack([latent, energy[:, None]]))  # (N, 25, 25, 25) GeV

That runs the logged code file from the store. ``calo.precision.load_engine("models:/...")``
reads the same registered engine as data instead (its graph only; a pickle in it is refused).
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
from mlflow.pyfunc import PythonModel

from calo.tracking import Tracker

__all__ = ["EngineModel", "log_engine_model"]

ENGINE_ARTIFACT = "engine"


class EngineModel(PythonModel):
    """Input (N, latent_dim + 1): the latent, then Ep in GeV; output (N, 25, 25, 25) showers
    in GeV."""

    def load_context(self, context) -> None:
        from calo.precision import load_engine

        self.engine = load_engine(context.artifacts[ENGINE_ARTIFACT])

    def predict(self, context, model_input: np.ndarray, params=None) -> np.ndarray:
        inputs = np.asarray(model_input, dtype=np.float32)
        return self.engine.generate(inputs[:, :-1], inputs[:, -1])


def log_engine_model(tracker: Tracker, folder: str | Path, name: str,
                     input_example: np.ndarray, registered_name: str | None = None) -> str | None:
    """Log the engine saved in ``folder`` as a pyfunc model of the tracker's run (registered
    under ``registered_name`` if given); returns its model URI (None with tracking off).
    ``input_example``: a few rows of input, from which MLflow infers the signature."""
    if tracker.run_id is None:
        return None
    with tracker.active():
        info = mlflow.pyfunc.log_model(
            name=name, python_model=str(Path(__file__).with_name("pyfunc_code.py")),
            artifacts={ENGINE_ARTIFACT: str(folder)}, input_example=input_example,
            registered_model_name=registered_name,
            pip_requirements=[f"numpy=={np.__version__}", _tensorflow_requirement()])
    return info.model_uri


def _tensorflow_requirement() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"tensorflow-cpu=={version('tensorflow-cpu')}"
    except PackageNotFoundError:
        return f"tensorflow=={version('tensorflow')}"
