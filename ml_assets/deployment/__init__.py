"""The deploy layer: the live endpoint as an asset, rollback, and batch predictions."""
