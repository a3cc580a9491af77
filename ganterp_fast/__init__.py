"""ganterp-fast: GANterpretations music videos, rendered with ONNX Runtime and PyAV."""

__version__ = "0.1.0"
