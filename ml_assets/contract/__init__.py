"""The pipeline contract: typed declarations, their loading and validation, the format of a
registered model, and the declaration in Dagster's terms (``dagster_terms``, never imported by
the prediction services)."""
