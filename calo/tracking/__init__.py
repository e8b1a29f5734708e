"""The only module that talks to MLflow: stores, runs, and what a run records."""

from calo.tracking.store import configure_store, tracking_uri
from calo.tracking.tracker import Tracker, flatten, tracked_run

__all__ = ["Tracker", "configure_store", "flatten", "tracked_run", "tracking_uri"]
