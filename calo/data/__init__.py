"""Reference showers: the parametrised simulator, the EleEscan HDF5 layout and the run's cache."""

from calo.data.eleescan import read_eleescan, write_eleescan
from calo.data.reference import load_reference, simulate_reference
from calo.data.showers import Showers, check_showers

__all__ = [
    "Showers",
    "check_showers",
    "load_reference",
    "read_eleescan",
    "simulate_reference",
    "write_eleescan",
]
