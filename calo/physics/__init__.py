"""Physics validation: plain functions of shower arrays that return numbers (with errors where
they have them); :func:`validate` runs them all, :mod:`calo.physics.plots` draws the results."""

from calo.physics.validate import (
    MeasuredReference,
    SampleComparison,
    ValidationResult,
    measure_reference,
    validate,
)

__all__ = ["MeasuredReference", "SampleComparison", "ValidationResult", "measure_reference",
           "validate"]
