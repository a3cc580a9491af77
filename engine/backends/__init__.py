"""Generators and what they share.

- `contract`: what an export holds (inputs, metadata, BigGAN's constants) and the ready-.onnx rule.
- `base`: the generator interface, the shared properties and input checks, the `Backend` record.
- `onnxruntime_generator` (with `providers`): ONNX Runtime on the CPU, CUDA and TensorRT, the exact path.
- `openvino_generator` (with `capability` and `gate`): bf16 on CPUs that compute it natively, behind a quality gate.
- `choice`: the precision planned and the backend that runs it, as pure functions; `open_generator`.
- `models` and `plan`: what `--model` means, the cache of exports, the model plan of a render.
- `bench` (with `timing`, `machine`, `peak`): `ganterp-fast bench`.

A new kind of generator is one more `<name>_generator.py` with a `BACKEND` record.
"""
