"""The 3DGAN networks (backend-neutral Keras 3) and how their inputs and outputs are scaled."""

from calo.model.generator import build_generator
from calo.model.io import NetworkIO, sample_latent

__all__ = ["NetworkIO", "build_generator", "sample_latent"]
