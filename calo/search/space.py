"""The search space: which quantizable nodes stay fp32, as one yes/no switch per node or per
group of nodes.

The backend reports the nodes it can quantize (``calo.precision.quantizable_nodes``: Neural
Compressor's for int8_inc, the convolutions and matmuls NNCF quantizes for int8_ov);
in the generator they are named ``<layer>/<op>``, with the layers of the three paths named
``<path><block>_conv`` (``xy4_conv``: path xy, block 4; ``calo.model.generator``). The coarser
granularities group the switches by that name: ``path`` (one switch per path, all its blocks)
and ``depth`` (one switch per block index, across the three paths); nodes outside the paths
(the seed dense layer, the concatenation, the combining convolution) keep a switch each.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from calo.errors import CaloError
from calo.precision.inc import layer_name
from calo.search.settings import SearchGranularity

__all__ = ["PARAM_PREFIX", "SearchSpace", "Switch"]

# Optuna parameter of a switch: "keep_fp32/<switch name>", True keeps its nodes in fp32.
PARAM_PREFIX = "keep_fp32/"
_PATH_LAYER = re.compile(r"(?P<path>[a-z]+)(?P<block>\d+)_")


@dataclass(frozen=True)
class Switch:
    """One decision of a trial: keep these quantizable nodes in fp32, or not."""

    name: str
    nodes: tuple[str, ...]

    @property
    def param(self) -> str:
        return PARAM_PREFIX + self.name


def _group(node: str, granularity: SearchGranularity) -> str:
    layer = layer_name(node)
    match = _PATH_LAYER.match(layer)
    if granularity is SearchGranularity.node or match is None:
        return layer
    if granularity is SearchGranularity.path:
        return f"path_{match['path']}"
    return f"block_{match['block']}"


@dataclass(frozen=True)
class SearchSpace:
    """The switches over the backend's quantizable nodes, in the graph's order."""

    granularity: SearchGranularity
    quantizable: tuple[tuple[str, str], ...]  # (node name, op type)
    switches: tuple[Switch, ...]

    @classmethod
    def from_nodes(cls, quantizable: Sequence[Sequence[str]],
                   granularity: SearchGranularity | str) -> SearchSpace:
        granularity = SearchGranularity(granularity)
        nodes = tuple((str(name), str(op)) for name, op in quantizable)
        if not nodes:
            raise CaloError("the backend reports no quantizable node in this generator: "
                            "there is nothing to search")
        groups: dict[str, list[str]] = {}
        layer_counts: dict[str, int] = {}
        for name, _ in nodes:
            layer_counts[layer_name(name)] = layer_counts.get(layer_name(name), 0) + 1
        for name, _ in nodes:
            key = _group(name, granularity)
            if granularity is SearchGranularity.node and layer_counts[layer_name(name)] > 1:
                key = name  # a layer with several quantizable nodes: one switch per node
            groups.setdefault(key, []).append(name)
        switches = tuple(Switch(key, tuple(names)) for key, names in groups.items())
        return cls(granularity, nodes, switches)

    def kept_nodes(self, params: Mapping[str, bool]) -> list[str]:
        """The node names a trial's parameters keep in fp32, in the graph's order."""
        kept = {node for switch in self.switches if params.get(switch.param)
                for node in switch.nodes}
        return [name for name, _ in self.quantizable if name in kept]

    def plain_params(self) -> dict[str, bool]:
        """Every switch off: plain int8, the trial every search starts from."""
        return {switch.param: False for switch in self.switches}

    def sparse_params(self, count: int, max_on: int, seed: int) -> list[dict[str, bool]]:
        """Up to ``count`` distinct random sets of 1 to ``max_on`` switches on (the number of
        switches drawn uniformly first, then which; seeded)."""
        names = [switch.param for switch in self.switches]
        limit = min(max_on, len(names))
        possible = sum(math.comb(len(names), size) for size in range(1, limit + 1))
        rng = np.random.default_rng(seed)
        drawn: list[frozenset[str]] = []
        while len(drawn) < min(count, possible):
            size = int(rng.integers(1, limit + 1))
            on = frozenset(str(name) for name in rng.choice(names, size, replace=False))
            if on not in drawn:
                drawn.append(on)
        return [{**self.plain_params(), **dict.fromkeys(sorted(on), True)} for on in drawn]

    def keep_patterns(self, kept: Sequence[str]) -> list[str]:
        """``precision.keep_fp32`` entries that select exactly ``kept``: the layer name where
        it names one quantizable node (``xy4_conv``), the full node name otherwise."""
        layers = [layer_name(name) for name, _ in self.quantizable]
        return [re.escape(layer_name(name)) if layers.count(layer_name(name)) == 1
                else re.escape(name) for name in kept]

    def describe(self) -> dict[str, object]:
        """What a study stores to recognise its space: granularity, nodes and switches."""
        return {"granularity": self.granularity.value,
                "quantizable": [list(pair) for pair in self.quantizable],
                "switches": {switch.name: list(switch.nodes) for switch in self.switches}}

    def fingerprint(self) -> str:
        text = json.dumps(self.describe(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]
