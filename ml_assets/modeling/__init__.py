"""Generic model layer: search spaces, Optuna studies, MLflow tracking and model assets."""
