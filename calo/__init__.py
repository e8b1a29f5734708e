"""calo: a 3D GAN for calorimeter showers, quantized and measured for speed and physics."""

import os

# TensorFlow's C++ start-up chatter (oneDNN notices, CPU feature lines) buries the run's own log.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
