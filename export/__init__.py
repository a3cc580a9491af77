"""BigGAN-deep to ONNX: checkpoint loading, random weights, graph export and parity check.

The only part of ganterp-fast that imports torch and pytorch-pretrained-biggan (the
`[export]` extra). The engine reads the `.onnx` files written here and never imports this.

```python
from ganterp_fast.export import export_model
report = export_model("biggan-deep-128", "biggan-deep-128.onnx", precision="fp16")
```
"""

from __future__ import annotations

from .checkpoint import ARCHITECTURES, PRETRAINED_NAMES, load_biggan, make_config
from .exporter import ExportReport, export_model, preparation_plan
from .graph import ExportableBigGAN
from .parity import check_parity, reference_frames
from .quantize import Int8Settings, QuantizeReport, quantize_int8
from .random_weights import make_random_biggan, write_random_checkpoint

__all__ = [
    "ARCHITECTURES",
    "PRETRAINED_NAMES",
    "ExportReport",
    "ExportableBigGAN",
    "Int8Settings",
    "QuantizeReport",
    "check_parity",
    "export_model",
    "load_biggan",
    "make_config",
    "make_random_biggan",
    "preparation_plan",
    "quantize_int8",
    "reference_frames",
    "write_random_checkpoint",
]
