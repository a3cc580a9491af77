"""Generators: the model contract, providers, ONNX Runtime and OpenVINO, the backend choice, model planning, bench."""
