"""TensorFlow training steps: gradient tapes under a ``tf.distribute`` strategy.

The global batch arrives as numpy arrays; each replica takes its contiguous slice, computes its
loss share (see ``recipe.weighted_loss``) and the optimizer sums the gradients across replicas.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from calo.model.generator import OutputActivation
from calo.train.recipe import (
    GeneratorLoss,
    PhysicsTargets,
    Targets,
    activation,
    loss_metrics,
    weighted_loss,
)

__all__ = ["TFSteps"]


class TFSteps:
    """Discriminator and generator updates, and inference, for the TensorFlow backend."""

    def __init__(self, generator, output: OutputActivation, discriminator, g_optimizer,
                 d_optimizer, generator_loss: GeneratorLoss,
                 strategy: tf.distribute.Strategy) -> None:
        """``generator`` is the linear-output network; ``output`` its activation."""
        self.generator, self.discriminator = generator, discriminator
        self.activate = activation(output)
        self.g_optimizer, self.d_optimizer = g_optimizer, d_optimizer
        self.generator_loss = generator_loss
        self.loss_weights = list(generator_loss.loss_weights)
        self.global_batch = generator_loss.global_batch
        self.strategy = strategy
        self._d_update = tf.function(self._replicated(self._d_replica_step))
        self._g_update = tf.function(self._replicated(self._g_replica_step))
        self._infer = tf.function(lambda x: self.activate(generator(x, training=False)))

    def _replicated(self, replica_step):
        def step(*per_replica_inputs):
            losses = self.strategy.run(replica_step, args=per_replica_inputs)
            return [self.strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None)
                    for loss in losses]

        return step

    def _d_replica_step(self, images, label, aux, ecal):
        with tf.GradientTape() as tape:
            outputs = self.discriminator(images, training=True)
            total, parts = weighted_loss(outputs, (label, aux, ecal), self.loss_weights,
                                         self.global_batch)
        variables = self.discriminator.trainable_variables
        self.d_optimizer.apply(tape.gradient(total, variables), variables)
        return (total, *parts)

    def _g_replica_step(self, latent, label, aux, ecal, *physics):
        with tf.GradientTape() as tape:
            linear = self.generator(latent, training=True)
            outputs = self.discriminator(self.activate(linear), training=False)
            total, parts = self.generator_loss(linear, outputs, (label, aux, ecal),
                                               physics)
        variables = self.generator.trainable_variables
        self.g_optimizer.apply(tape.gradient(total, variables), variables)
        return (total, *parts)

    def _distribute(self, *arrays: np.ndarray) -> list:
        """Each replica's contiguous slice of the global batch, per array."""
        share = self.global_batch // self.strategy.num_replicas_in_sync

        def replica_slice(array: np.ndarray):
            def value(context: tf.distribute.InputContext):
                start = context.replica_id_in_sync_group * share
                return tf.constant(array[start : start + share])

            return self.strategy.experimental_distribute_values_from_function(value)

        return [replica_slice(array) for array in arrays]

    def discriminator_step(self, images: np.ndarray, targets: Targets) -> dict[str, float]:
        return loss_metrics("d", self._d_update(*self._distribute(images, *targets.as_tuple())))

    def generator_step(self, latent: np.ndarray, targets: Targets,
                       physics: PhysicsTargets) -> dict[str, float]:
        arrays = self._distribute(latent, *targets.as_tuple(), *physics.as_tuple())
        return loss_metrics("g", self._g_update(*arrays))

    def generate(self, network_input: np.ndarray) -> np.ndarray:
        return self._infer(tf.constant(network_input)).numpy()

    def sync_models(self) -> None:
        """The Keras variables are the training state already."""

    def reload_models(self) -> None:
        """The Keras variables are the training state already."""
