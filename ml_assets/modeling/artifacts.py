"""Where a trained model's MLflow run and registry version keep what the service reads: the
names both the model layer (writing) and the prediction service (reading) agree on."""

ONNX_DIR, ONNX_FILE = "onnx", "model.onnx"
ONNX_ARTIFACT = f"{ONNX_DIR}/{ONNX_FILE}"
"""The trained model's ONNX export in its run, when there is one."""
ONNX_TAG = "onnx_export"
"""Run tag: why the export was kept or not."""
FORECASTER_TAG = "forecaster"
"""Run tag of a statistical forecaster: the model its automatic search chose."""
THRESHOLD_TAG = "decision_threshold"
"""Registry tag of a classifier's decision threshold (chosen on validation)."""
