"""The model: torch definition and training, ONNX export, ONNX Runtime serving, evaluation."""
