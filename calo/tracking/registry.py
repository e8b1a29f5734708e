"""Models in the MLflow model registry: ``models:/<name>/<version>`` URIs."""

from __future__ import annotations

from typing import Any

from calo.errors import CaloError, one_line

__all__ = ["is_registry_uri", "load_registered_weights"]


def is_registry_uri(location: str) -> bool:
    return location.startswith(("models:/", "runs:/"))


def load_registered_weights(uri: str, model: Any) -> None:
    """Copy the weights of the registered Keras model at ``uri`` into ``model``.

    The tracking URI must already point at the store that holds the registry.
    """
    import mlflow

    try:
        registered = mlflow.tensorflow.load_model(uri)
    except Exception as error:  # MLflow raises many types for a bad URI or store
        raise CaloError(f"cannot load {uri} from the model registry ({one_line(error, 200)})"
                        ) from error
    weights = registered.get_weights()
    expected = [tuple(w.shape) for w in model.get_weights()]
    if [tuple(w.shape) for w in weights] != expected:
        raise CaloError(f"{uri} does not fit this {model.name}: check model= and the version")
    model.set_weights(weights)
