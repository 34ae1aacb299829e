"""The monitor layer: what the live model does once it serves, and what a person is told.

Names shared by the monitor assets, the rollout controller and the alerts sensor.
"""

MONITOR = "monitor"
"""The layer's group suffix: ``<prefix>_monitor``."""
LIVE_PERFORMANCE_CHECK = "live_performance_within_bar"
"""The check on ``live_performance``: the champion's live metric over the declared window
against its own test figure."""
FEATURE_DRIFT_CHECK = "feature_drift_within_bar"
"""The check on ``feature_drift``: every feature's PSI against the training set under the bar."""
MONITORING_CHECKS = (LIVE_PERFORMANCE_CHECK, FEATURE_DRIFT_CHECK)
"""WARN checks whose failures are alerted all the same (failed blocking checks always are)."""
ROLLOUT_DECISION = "rollout/decision"
"""Metadata key of the rollout controller's observations of ``deployed_endpoint``."""
ROLLED_BACK = "rolled_back"
"""The ``rollout/decision`` of an automatic rollback (alerted)."""
