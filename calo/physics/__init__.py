"""Physics validation: plain functions of shower arrays that return numbers (and errors)."""
