"""Training the 3DGAN: ``python -m calo.train``."""
