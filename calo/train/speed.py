"""``python -m calo.train.speed [--batch 64] [--steps 3] [--jit] [--bf16]``: the time of one
full-size training step on this machine (a discriminator update on real showers, then a
generator update through the discriminator), the median of ``--steps`` after tracing.

It measures the paths a training could take (float32, XLA, Keras ``mixed_bfloat16``) on random
inputs, without data or MLflow, so that the choice for a long run rests on a number.
"""

from __future__ import annotations

import argparse
import statistics
import time

import keras
import numpy as np


def step_seconds(batch: int, steps: int, jit: bool, bf16: bool) -> tuple[float, list[float]]:
    """(first step including tracing, the following steps) in seconds."""
    import tensorflow as tf

    if bf16:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    from calo.config import ModelConfig
    from calo.model.discriminator import build_discriminator
    from calo.model.generator import build_generator

    cfg = ModelConfig(name="full")
    generator, discriminator = build_generator(cfg), build_discriminator(cfg)
    g_optimizer, d_optimizer = keras.optimizers.Adam(5e-4), keras.optimizers.Adam(1e-4)

    def score(outputs) -> tf.Tensor:
        return tf.reduce_mean(tf.cast(outputs[0], tf.float32))

    @tf.function(jit_compile=jit)
    def step(latent, showers):
        with tf.GradientTape() as tape:
            d_loss = score(discriminator(showers, training=True))
        d_optimizer.apply(tape.gradient(d_loss, discriminator.trainable_variables),
                          discriminator.trainable_variables)
        with tf.GradientTape() as tape:
            g_loss = score(discriminator(generator(latent, training=True), training=True))
        g_optimizer.apply(tape.gradient(g_loss, generator.trainable_variables),
                          generator.trainable_variables)
        return d_loss + g_loss

    rng = np.random.default_rng(0)
    latent = tf.constant(rng.standard_normal((batch, cfg.latent_dim), np.float32))
    showers = tf.constant(rng.uniform(size=(batch, 25, 25, 25)).astype(np.float32))
    timings = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        step(latent, showers).numpy()
        timings.append(time.perf_counter() - start)
    return timings[0], timings[1:]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m calo.train.speed", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--jit", action="store_true", help="compile the step with XLA")
    parser.add_argument("--bf16", action="store_true", help="Keras mixed_bfloat16 policy")
    arguments = parser.parse_args()
    first, rest = step_seconds(arguments.batch, arguments.steps, arguments.jit, arguments.bf16)
    median = statistics.median(rest)
    print(f"batch {arguments.batch}, jit={arguments.jit}, bf16={arguments.bf16}: first step "
          f"{first:.1f} s, then {median:.2f} s per step ({arguments.batch / median:.1f} showers/s)")


if __name__ == "__main__":
    main()
