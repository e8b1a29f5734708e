"""The code of a logged engine model (MLflow "models from code"): MLflow runs this file to load
the model, so that no pickled object is ever executed."""

import mlflow

from calo.precision.pyfunc import EngineModel

mlflow.models.set_model(EngineModel())
