"""How the prediction service computes a day's features: a caller sends the date, the forecast
weather and the games; the lags and the 7-day mean come from the ``recent_days`` snapshot,
through the platform's history hooks and the same ``feature_columns`` as the asset."""

from ml_assets.data.online_history import history_hooks
from ml_assets.pipelines import declaration
from ml_assets.pipelines.ridership.features import feature_columns

HOOKS = history_hooks(declaration("ridership"), feature_columns)
