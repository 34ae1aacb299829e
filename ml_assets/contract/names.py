"""Names that several layers and the services share: registry aliases, rollout stages, check
names and metadata keys. Defined once here, at the bottom of the layers, so that modeling,
deployment, monitoring, the sensors and the services agree without importing each other."""

CHAMPION, PREVIOUS_CHAMPION, CHALLENGER = "champion", "previous_champion", "challenger"
"""The registry aliases of a deployment: ``champion`` is live, ``previous_champion`` the
fallback, ``challenger`` the newest registered version; also the roles of the two versions a
service scores with during a rollout."""

STAGE_TAG = "rollout_stage"
"""The registry tag of a challenger that says where its rollout stands."""
SHADOW, CANARY, FULL = "shadow", "canary", "full"
STAGES = (SHADOW, CANARY)
"""The stages in which a challenger is loaded beside the champion."""

LIVE_PERFORMANCE_CHECK = "live_performance_within_bar"
"""The check on ``live_performance``: the champion's live metric over the declared window
against its own test figure."""
FEATURE_DRIFT_CHECK = "feature_drift_within_bar"
"""The check on ``feature_drift``: every feature's PSI against its declared reference under the
bar."""
MONITORING_CHECKS = (LIVE_PERFORMANCE_CHECK, FEATURE_DRIFT_CHECK)
"""WARN checks whose failures are alerted all the same (failed blocking checks always are)."""
ROLLOUT_DECISION = "rollout/decision"
"""Metadata key of the rollout controller's observations of ``deployed_endpoint``."""
ROLLED_BACK = "rolled_back"
"""The ``rollout/decision`` of an automatic rollback (alerted)."""
