"""The pipeline contract: typed declarations, their loading and validation."""
