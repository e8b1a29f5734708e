"""What one search process shares (:class:`SearchJob`), and how it is opened: generator,
search space, study and the fp32 baseline, before any MLflow run."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any

import optuna
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState

from calo.config import PrecisionConfig
from calo.hw import Topology
from calo.precision.engine import Engine
from calo.search.evaluate import Evaluator
from calo.search.settings import SearchJobConfig
from calo.search.space import SearchSpace
from calo.search.study import (
    PARENT_RUN_ATTR,
    check_study,
    count,
    open_storage,
    open_study,
    safe_url,
    search_setup,
    storage_url,
    study_name,
    wait_for_attr,
)

__all__ = ["SearchJob", "open_search"]

log = logging.getLogger(__name__)

PARENT_WAIT_S = 120.0  # how long a process that did not create the study waits for its parent


@dataclass
class SearchJob:
    """What every stage of one search process shares: the study, its search space, the
    generator and the evaluator that measures every engine the same way."""

    cfg: DictConfig
    settings: SearchJobConfig
    study: optuna.Study
    space: SearchSpace
    generator: Any
    graph: Any  # the inference graph (calo.precision.graph.Graph) the backend quantizes
    evaluator: Evaluator
    parent_id: str | None = None
    parent_tags: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.study.study_name

    def child_tags(self, role: str) -> dict[str, str]:
        return {"search_role": role, "search/study": self.name}

    def build(self, precision: PrecisionConfig) -> Engine:
        """The generator as an engine of ``precision``, calibrated on the model's latents."""
        from calo.precision import build_engine

        return build_engine(self.generator, self.evaluator.io, precision,
                            latent_distribution=self.settings.model.latent_distribution)

    def child_precision(self, **changes: Any) -> tuple[PrecisionConfig, DictConfig]:
        """The run's precision with ``changes``, and the run's config with the same changes
        (what the child run records)."""
        values = {key: value.value if isinstance(value, Enum) else value
                  for key, value in changes.items()}
        return (replace(self.settings.precision, **changes),
                OmegaConf.merge(self.cfg, {"precision": values}))


def open_search(cfg: DictConfig, settings: SearchJobConfig, topology: Topology,
                folder: Path) -> SearchJob:
    """The generator, its search space, the study (checked to be this search's, created with
    plain int8 as its first trial if new) and the fp32 baseline of the trials' inputs;
    before any MLflow run, so that a foreign study or an unreachable storage leaves no trace.
    ``folder`` keeps the saved fp32 engine the trials are timed against."""
    import keras

    from calo.data import load_reference
    from calo.model.weights import load_generator
    from calo.precision import quantizable_nodes, require_cpu_for
    from calo.precision.rewrite import inference_graph

    search, backend = settings.search, settings.precision.backend
    require_cpu_for(backend.value)
    keras.utils.set_random_seed(settings.seed)  # an untrained generator: the same in every process
    generator, trained = load_generator(settings.model)
    graph = inference_graph(generator, settings.precision.rewrite)
    space = SearchSpace.from_nodes(quantizable_nodes(backend, graph), search.granularity)
    log.info("search space: %d switches (granularity %s) over %d quantizable nodes",
             len(space.switches), search.granularity.value, len(space.quantizable))
    url = storage_url(search, settings.tracking)
    study, created = open_study(open_storage(url, search.heartbeat_s), study_name(settings),
                                search)
    check_study(study, {"fingerprint": space.fingerprint(), "space": space.describe()},
                search_setup(settings), search, url)
    if created:
        for params in [space.plain_params(),
                       *space.sparse_params(search.population_size - 1, search.start_switches,
                                            search.seed)]:
            study.enqueue_trial(params, skip_if_exists=True)
    log.info("study %s in %s: %d completed trial(s) so far", study.study_name, safe_url(url),
             count(study, TrialState.COMPLETE))
    evaluator = Evaluator(generator, settings, topology, load_reference(settings.data), folder)
    tags = {"search_role": "search", "search/study": study.study_name,
            "search/storage": safe_url(url), "generator_trained": str(trained).lower()}
    job = SearchJob(cfg, settings, study, space, generator, graph, evaluator,
                    parent_tags=tags)
    job.parent_id = _parent_run_id(job, created)
    return job


def _parent_run_id(job: SearchJob, created: bool) -> str | None:
    """The study's parent run, when this store holds it; None: start one."""
    from calo.tracking.query import run_exists

    tracking = job.settings.tracking
    if not tracking.enabled:
        return None
    run_id = job.study.user_attrs.get(PARENT_RUN_ATTR)
    if run_id is None and not created:
        log.info("waiting for the process that created study %s to start its parent run",
                 job.name)
        run_id = wait_for_attr(job.study, PARENT_RUN_ATTR, PARENT_WAIT_S)
    if run_id is not None and not run_exists(tracking, run_id):
        log.warning("the parent run %s of study %s is not in this MLflow store: starting a new "
                    "one", run_id, job.name)
        return None
    return run_id
