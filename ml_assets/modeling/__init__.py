"""The generic model layer: one module per asset (``training_set``, ``hyperparameter_study``,
``trained_model``, ``model_evaluation``, ``registered_model``, composed in ``assets``) and what
they use: model families, Optuna studies, metrics, plots, MLflow logging, ONNX export.
"""
