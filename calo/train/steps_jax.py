"""JAX training steps: pure functions over the models' variables, compiled with ``jax.jit``.

Keras 3 on JAX needs explicit state: the trainable and non-trainable variables of both networks
and both optimizers travel through ``stateless_call`` / ``stateless_apply`` and are written back
to the Keras variables by ``sync_models`` (before validation and checkpoints).
"""

from __future__ import annotations

import jax
import numpy as np

from calo.model.generator import OutputActivation
from calo.train.recipe import (
    GeneratorLoss,
    PhysicsTargets,
    Targets,
    activation,
    loss_metrics,
    weighted_loss,
)

__all__ = ["JaxSteps"]


class JaxSteps:
    """Discriminator and generator updates, and inference, for the JAX backend (one device)."""

    def __init__(self, generator, output: OutputActivation, discriminator, g_optimizer,
                 d_optimizer, generator_loss: GeneratorLoss) -> None:
        """``generator`` is the linear-output network; ``output`` its activation."""
        self.generator, self.discriminator = generator, discriminator
        self.activate = activation(output)
        self.g_optimizer, self.d_optimizer = g_optimizer, d_optimizer
        self.generator_loss = generator_loss
        self.loss_weights = list(generator_loss.loss_weights)
        self.global_batch = generator_loss.global_batch
        self.reload_models()
        self._d_update = jax.jit(self._d_update_fn, donate_argnums=0)
        self._g_update = jax.jit(self._g_update_fn, donate_argnums=0)
        self._infer = jax.jit(self._infer_fn)

    def _loss(self, outputs, targets):
        return weighted_loss(outputs, targets, self.loss_weights, self.global_batch)

    def _d_update_fn(self, state, images, targets):
        def loss_fn(d_weights):
            outputs, d_fixed = self.discriminator.stateless_call(
                d_weights, state["d_fixed"], images, training=True)
            total, parts = self._loss(outputs, targets)
            return total, (d_fixed, parts)

        (total, (d_fixed, parts)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["d"])
        d_weights, d_opt = self.d_optimizer.stateless_apply(state["d_opt"], grads, state["d"])
        return {**state, "d": d_weights, "d_fixed": d_fixed, "d_opt": d_opt}, (total, *parts)

    def _g_update_fn(self, state, latent, targets, physics):
        def loss_fn(g_weights):
            linear, g_fixed = self.generator.stateless_call(
                g_weights, state["g_fixed"], latent, training=True)
            outputs, _ = self.discriminator.stateless_call(
                state["d"], state["d_fixed"], self.activate(linear), training=False)
            total, parts = self.generator_loss(linear, outputs, targets, physics)
            return total, (g_fixed, parts)

        (total, (g_fixed, parts)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["g"])
        g_weights, g_opt = self.g_optimizer.stateless_apply(state["g_opt"], grads, state["g"])
        return {**state, "g": g_weights, "g_fixed": g_fixed, "g_opt": g_opt}, (total, *parts)

    def _infer_fn(self, state, network_input):
        linear, _ = self.generator.stateless_call(state["g"], state["g_fixed"], network_input,
                                                  training=False)
        return self.activate(linear)

    def discriminator_step(self, images: np.ndarray, targets: Targets) -> dict[str, float]:
        self.state, losses = self._d_update(self.state, images, targets.as_tuple())
        return loss_metrics("d", losses)

    def generator_step(self, latent: np.ndarray, targets: Targets,
                       physics: PhysicsTargets) -> dict[str, float]:
        self.state, losses = self._g_update(self.state, latent, targets.as_tuple(),
                                            physics.as_tuple())
        return loss_metrics("g", losses)

    def generate(self, network_input: np.ndarray) -> np.ndarray:
        return np.asarray(self._infer(self.state, network_input))

    def _pairs(self):
        return (
            (self.generator.trainable_variables, "g"),
            (self.generator.non_trainable_variables, "g_fixed"),
            (self.discriminator.trainable_variables, "d"),
            (self.discriminator.non_trainable_variables, "d_fixed"),
            (self.g_optimizer.variables, "g_opt"),
            (self.d_optimizer.variables, "d_opt"),
        )

    def sync_models(self) -> None:
        """Write the training state back into the Keras variables."""
        for variables, key in self._pairs():
            for variable, value in zip(variables, self.state[key]):
                variable.assign(value)

    def reload_models(self) -> None:
        """Read the training state from the Keras variables (after they were changed)."""
        self.state = {key: [variable.value for variable in variables]
                      for variables, key in self._pairs()}
