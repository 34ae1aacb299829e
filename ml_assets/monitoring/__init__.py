"""The monitor layer: what the live model does once it serves, and what a person is told.
(The check names it shares with other layers are in ``ml_assets.contract.names``.)"""

MONITOR = "monitor"
"""The layer's group suffix: ``<prefix>_monitor``."""
