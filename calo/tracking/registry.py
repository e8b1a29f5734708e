"""Models in the MLflow model registry: ``models:/<name>/<version>`` and ``runs:/`` URIs.

A registered model is read as data: its artifacts are downloaded and only the Keras weights
(a ``.weights.h5`` file, or the one inside a ``.keras`` archive) are taken from them. MLflow's
own loader would unpickle ``custom_objects.cloudpickle`` and import model code from the store,
which runs whatever the registrant put there; a model folder that holds a pickle is refused,
naming the file. ``model.trust_mlflow_loader=true`` opts in to MLflow's loader for a store
one trusts.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

from calo.errors import CaloError, one_line

__all__ = ["is_registry_uri", "load_with_mlflow", "registered_engine_folder",
           "registered_weights_file"]

ENGINE_FILE = "engine.json"  # calo.precision.engine's metadata file

_PICKLE_SUFFIXES = (".pkl", ".pickle", ".cloudpickle", ".joblib", ".dill")
_KERAS_WEIGHTS = "model.weights.h5"  # inside a .keras archive


def is_registry_uri(location: str) -> bool:
    return location.startswith(("models:/", "runs:/"))


def _is_pickle(path: Path) -> bool:
    """By name, or by content: protocol 2 and later pickles start with 0x80 and the protocol."""
    if path.suffix.lower() in _PICKLE_SUFFIXES:
        return True
    with open(path, "rb") as stream:
        head = stream.read(2)
    return len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def _download(uri: str, folder: Path) -> Path:
    import mlflow

    try:
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(folder)))
    except Exception as error:  # MLflow raises many types for a bad URI or store
        raise CaloError(f"cannot read {uri} from the model registry ({one_line(error, 200)}): "
                        "check the name and version (mlflow models list) and tracking.uri"
                        ) from error


def registered_weights_file(uri: str, workdir: Path) -> Path:
    """The Keras weights of the registered model at ``uri``, downloaded into ``workdir``.

    Refuses a model folder that holds a pickle, and one with no weights, or several.
    """
    files = _downloaded_files(uri, workdir)
    weights = [p for p in files if p.name.endswith(".weights.h5")]
    archives = [p for p in files if p.suffix == ".keras"]
    if len(weights) + len(archives) != 1:
        raise CaloError(f"{uri} holds {len(weights)} .weights.h5 files and {len(archives)} .keras "
                        "archives; calo needs exactly one to take the weights from")
    return weights[0] if weights else _weights_from_archive(archives[0], workdir, uri)


def _downloaded_files(uri: str, workdir: Path) -> list[Path]:
    """The model's artifacts downloaded into ``workdir``, refused if any is a pickle."""
    folder = _download(uri, workdir)
    files = [folder] if folder.is_file() else sorted(p for p in folder.rglob("*") if p.is_file())
    pickles = [p for p in files if _is_pickle(p)]
    if pickles:
        raise CaloError(f"{uri} holds a pickle ({pickles[0].relative_to(folder.parent)}), which "
                        "can run code when loaded: calo loads weights and graphs only. Register "
                        "the model without it, or opt in to MLflow's loader: "
                        "model.trust_mlflow_loader=true")
    return files


def registered_engine_folder(uri: str, workdir: Path) -> Path:
    """The saved calo engine inside the registered (pyfunc) model at ``uri``, downloaded into
    ``workdir``; its code file is never run (calo.precision.load_engine reads the folder)."""
    files = _downloaded_files(uri, workdir)
    engines = [p.parent for p in files if p.name == ENGINE_FILE]
    if len(engines) != 1:
        raise CaloError(f"{uri} holds {len(engines)} saved calo engines ({ENGINE_FILE}); "
                        "expected one: is it an engine the search registered?")
    return engines[0]


def _weights_from_archive(archive: Path, workdir: Path, uri: str) -> Path:
    """The weights member of a ``.keras`` zip archive (its config is never read)."""
    target = workdir / "from-archive.weights.h5"
    try:
        with zipfile.ZipFile(archive) as opened, opened.open(_KERAS_WEIGHTS) as member:
            target.write_bytes(member.read())
    except (zipfile.BadZipFile, KeyError, OSError) as error:
        raise CaloError(f"{uri}: {archive.name} is not a Keras archive with {_KERAS_WEIGHTS} "
                        f"({one_line(error, 200)})") from error
    return target


def load_with_mlflow(uri: str, model: Any) -> None:
    """MLflow's own loader (it may unpickle and import code from the store): opt-in only."""
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
