"""Provider planning and the IO-binding runner (CUDA graphs included), testable without a GPU.

`plan_providers` is pure; `BoundRunner` runs on any device ONNX Runtime knows, so its buffer
and graph-id bookkeeping is checked on a real CPU session with the real tiny model. The
`gpu`-marked tests run the same paths on CUDA where a GPU exists.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from media import latents

from ganterp_fast.engine.backends.base import Backend, GeneratorBase
from ganterp_fast.engine.backends.choice import choose_backend, export_precision, registered_backends
from ganterp_fast.engine.backends.contract import AUTO_BF16
from ganterp_fast.engine.backends.onnxruntime_generator import Generator
from ganterp_fast.engine.backends.providers import (
    BOUND_BATCHES_KEPT,
    CPU,
    CUDA,
    TENSORRT,
    BoundRunner,
    ProviderPlan,
    plan_providers,
)
from ganterp_fast.engine.errors import InputError, ProviderError


@pytest.fixture(scope="module")
def generator(tiny_onnx: Path) -> Generator:
    return Generator(tiny_onnx, device="cpu")


# -- provider choice (pure) ------------------------------------------------------------------


# -- the choice of backend ------------------------------------------------------------------


def test_the_choice_reads_every_backend_module() -> None:
    """Each engine/backends/*_generator.py registers itself; the choice is a pure function of the records."""
    assert [backend.name for backend in registered_backends()] == ["onnxruntime", "openvino"]
    assert [choose_backend(p, "cpu").name for p in ("auto", "fp32", "fp16", "int8")] == ["onnxruntime"] * 4
    assert choose_backend("fp16", "cuda:1").name == "onnxruntime"
    assert choose_backend("bf16", "cpu").name == choose_backend(AUTO_BF16, "auto").name == "openvino"
    with pytest.raises(InputError, match="bf16"):
        choose_backend("bf16", "cuda")
    assert [export_precision(p) for p in ("bf16", AUTO_BF16, "auto", "fp16")] == ["fp32", "fp32", "auto", "fp16"]


def test_a_third_backend_is_one_more_record() -> None:
    """A new kind of generator serves its precisions and devices by its record alone: ranked first where it does."""
    known = registered_backends()
    third = Backend("third", ("fp16", "fp8"), ("cuda",), open=lambda path, request: None, reads="fp16", rank=10)
    assert choose_backend("fp16", "cuda", [*known, third]) is third
    assert choose_backend("fp16", "cpu", [*known, third]).name == "onnxruntime"  # not on the CPU
    assert choose_backend("fp8", "auto", [*known, third]) is third
    assert export_precision("fp8", [*known, third]) == "fp16"
    with pytest.raises(InputError, match="fp8"):
        choose_backend("fp8", "cuda")  # not registered here


def test_no_backend_imports_another() -> None:
    """Backends are siblings: a *_generator module imports none of the others, at module level or in a function."""
    import ast

    import ganterp_fast.engine.backends as package

    folder = Path(package.__file__).parent
    backends = {path.stem for path in folder.glob("*_generator.py")}
    assert backends == {"onnxruntime_generator", "openvino_generator"}
    for name in backends:
        tree = ast.parse((folder / f"{name}.py").read_text(encoding="utf-8"))
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
        imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        others = {module for module in imported if module.rpartition(".")[2] in backends - {name}}
        assert not others, f"{name} imports {others}"


class Grey(GeneratorBase):
    """A stand-in backend in a few lines: every frame mid-grey."""

    def __init__(self, model_path: Path) -> None:
        super().__init__(model_path)
        self._providers = ["grey"]

    def infer(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        side = self.resolution
        return np.full((len(feeds["z"]), side, side, 3), 128, dtype=np.uint8)


def test_a_backend_gets_the_shared_interface_from_the_base(tiny_onnx: Path) -> None:
    grey, exact = Grey(tiny_onnx), Generator(tiny_onnx, device="cpu")
    assert (grey.resolution, grey.precision, grey.device, grey.device_id) == (128, "fp32", "cpu", 0)
    assert grey.metadata == exact.metadata and grey.providers == ["grey"] and not grey.cuda_graph and grey.gate is None
    z, classes = latents(3, 0.4)
    assert grey(z, classes).shape == (3, 128, 128, 3) and grey(z[:0], classes[:0]).shape == (0, 128, 128, 3)
    for bad, match in (({"truncation": 1.5}, "truncation"), ({"truncation": [0.4, 0.5]}, "one per sample")):
        with pytest.raises(InputError, match=match):
            grey(z, classes, **bad)
    with pytest.raises(InputError, match="shape"):
        grey(z[:, :10], classes)
    with pytest.raises(InputError, match="does not exist"):
        Grey(tiny_onnx.with_name("missing.onnx"))


# -- providers -------------------------------------------------------------------------------


def test_plan_cpu_only() -> None:
    plan = plan_providers([CPU], device="auto", precision="fp32", cpu_cores=6)
    assert plan.device == "cpu" and plan.provider_names == [CPU]
    assert plan.intra_op_threads == 6 and not plan.io_binding and not plan.notes


def test_plan_auto_prefers_cuda() -> None:
    plan = plan_providers([TENSORRT, CUDA, CPU], device="auto", precision="fp16", cpu_cores=4)
    assert plan.device == "cuda" and plan.provider_names == [CUDA, CPU]
    assert plan.io_binding and not plan.notes
    assert dict(plan.providers)[CUDA]["device_id"] == "0"


def test_plan_cpu_requested_with_gpu_build() -> None:
    plan = plan_providers([CUDA, CPU], device="cpu", precision="fp32", cpu_cores=2)
    assert plan.device == "cpu" and plan.provider_names == [CPU]


def test_plan_precision_notes() -> None:
    assert "fp16" in plan_providers([CUDA, CPU], device="cuda", precision="fp32").notes[0]
    assert "slower" in plan_providers([CPU], device="cpu", precision="fp16").notes[0]


def test_plan_cuda_unavailable() -> None:
    with pytest.raises(ProviderError, match="onnxruntime-gpu|GPU build"):
        plan_providers([CPU], device="cuda")


def test_plan_tensorrt(tmp_path: Path) -> None:
    plan = plan_providers([TENSORRT, CUDA, CPU], device="auto", precision="fp16", tensorrt=True, trt_cache_dir=tmp_path)
    assert plan.provider_names == [TENSORRT, CUDA, CPU]
    options = dict(plan.providers)[TENSORRT]
    assert options["trt_fp16_enable"] == "True"
    assert options["trt_engine_cache_path"] == str(tmp_path)
    assert options["trt_profile_min_shapes"].startswith("z:1x128,")
    with pytest.raises(ProviderError, match="TensorRT"):
        plan_providers([CUDA, CPU], tensorrt=True)
    with pytest.raises(InputError, match="TensorRT"):
        plan_providers([TENSORRT, CUDA, CPU], device="cpu", tensorrt=True)


def test_plan_rejects_bad_arguments() -> None:
    with pytest.raises(InputError, match="device"):
        plan_providers([CPU], device="tpu")
    with pytest.raises(InputError, match="threads"):
        plan_providers([CPU], threads=0)
    assert plan_providers([CPU], threads=3, cpu_cores=8).intra_op_threads == 3


def test_plan_cuda_graph() -> None:
    plan = plan_providers([CUDA, CPU], device="auto", precision="fp16", cuda_graph=True, cpu_cores=2)
    assert plan.cuda_graph and plan.io_binding
    assert dict(plan.providers)[CUDA]["enable_cuda_graph"] == "1"
    plain = plan.without_cuda_graph()
    assert not plain.cuda_graph and "enable_cuda_graph" not in dict(plain.providers)[CUDA]
    assert dict(plain.providers)[CUDA]["device_id"] == "0" and plain.provider_names == plan.provider_names
    assert "enable_cuda_graph" not in dict(plan_providers([CUDA, CPU], device="cuda").providers)[CUDA]


def test_plan_cuda_graph_with_tensorrt(tmp_path: Path) -> None:
    plan = plan_providers(
        [TENSORRT, CUDA, CPU], device="cuda", precision="fp16", tensorrt=True, cuda_graph=True, trt_cache_dir=tmp_path
    )
    assert dict(plan.providers)[TENSORRT]["trt_cuda_graph_enable"] == "True"
    assert "trt_cuda_graph_enable" not in dict(plan.without_cuda_graph().providers)[TENSORRT]


def test_plan_cuda_graph_on_the_cpu_is_a_note() -> None:
    plan = plan_providers([CPU], device="auto", precision="fp32", cuda_graph=True, cpu_cores=2)
    assert plan.device == "cpu" and not plan.cuda_graph
    assert any("CUDA graphs" in note for note in plan.notes)


def test_generator_cuda_graph_on_the_cpu(tiny_onnx: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="ganterp_fast.engine.backends.onnxruntime_generator"):
        generator = Generator(tiny_onnx, device="cpu", cuda_graph=True)
    assert generator.device == "cpu" and not generator.cuda_graph
    assert "CUDA graphs apply on the GPU only" in caplog.text


def test_session_refusing_cuda_graphs_falls_back(
    tiny_onnx: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Capture needs every node on the GPU: a session that refuses it is made again without."""
    import ganterp_fast.engine.backends.onnxruntime_generator as module

    real_plan, real_session = module.plan_providers, Generator._make_session
    plans: list[ProviderPlan] = []

    def graph_plan(*args, **kwargs) -> ProviderPlan:
        plan = real_plan(*args, **kwargs)
        return ProviderPlan(plan.device, plan.providers, plan.intra_op_threads, plan.io_binding, cuda_graph=True)

    def refusing(self, ort, plan):  # type: ignore[no-untyped-def]
        plans.append(plan)
        if plan.cuda_graph:
            raise RuntimeError(
                "This session cannot use the CUDA Graph feature as requested by the user "
                "as all compute graph nodes have not been partitioned to the CUDA EP."
            )
        return real_session(self, ort, plan)

    monkeypatch.setattr(module, "plan_providers", graph_plan)
    monkeypatch.setattr(Generator, "_make_session", refusing)
    with caplog.at_level(logging.WARNING, logger="ganterp_fast.engine.backends.onnxruntime_generator"):
        generator = Generator(tiny_onnx, device="cpu", cuda_graph=True)
    assert [p.cuda_graph for p in plans] == [True, False]
    assert not generator.cuda_graph
    assert "CUDA graphs are not possible" in caplog.text and "partitioned to the CUDA EP" in caplog.text
    z, classes = latents(2, 0.4)
    assert generator(z, classes, 0.4).shape == (2, 128, 128, 3)


# -- the IO-binding runner -------------------------------------------------------------------


def test_bound_runner_on_cpu(generator: Generator) -> None:
    """The IO-binding path (used on CUDA) gives the plain session's frames, buffers reused."""
    import onnxruntime

    runner = BoundRunner(generator._session, onnxruntime, "cpu")
    results = []
    for batch in (2, 3, 2):
        z, classes = latents(batch, 0.5, seed=batch)
        feeds = Generator.prepare(z, classes, 0.5)
        bound = runner.run(feeds)
        assert np.array_equal(bound, generator._session.run(["frames"], feeds)[0])
        results.append(bound)
    assert len(runner._buffers) == 2
    assert np.array_equal(results[0], results[2])  # the first result was a copy, not the buffer


def test_bound_runner_keeps_a_few_batch_sizes(generator: Generator) -> None:
    import onnxruntime

    runner = BoundRunner(generator._session, onnxruntime, "cpu")
    for batch in range(1, BOUND_BATCHES_KEPT + 3):
        z, classes = latents(batch, 0.5, seed=batch)
        runner.run(Generator.prepare(z, classes, 0.5))
    assert sorted(runner._buffers) == list(range(3, BOUND_BATCHES_KEPT + 3))
    assert runner.graph_ids() == {}


def test_bound_runner_graph_ids(generator: Generator) -> None:
    """With CUDA graphs: one id per batch size, the same id when a size returns, no buffer dropped.

    The ids travel as the `gpu_graph_id` run option, which the CPU provider ignores, so the
    frames here must equal the plain session's for every batch size, in any order.
    """
    import onnxruntime

    runner = BoundRunner(generator._session, onnxruntime, "cpu", cuda_graph=True)
    order = [2, 3, 2, 1, 4, 5, 6, 3]
    for batch in order:
        z, classes = latents(batch, 0.5, seed=batch)
        feeds = Generator.prepare(z, classes, 0.5)
        assert np.array_equal(runner.run(feeds), generator._session.run(["frames"], feeds)[0])
    ids = runner.graph_ids()
    assert sorted(ids) == sorted(set(order)) and len(set(ids.values())) == len(ids)
    assert sorted(runner._buffers) == sorted(set(order))  # a captured graph keeps its buffers
    assert all(value >= 1 for value in ids.values())
    other = BoundRunner(generator._session, onnxruntime, "cpu", cuda_graph=True)
    z, classes = latents(2, 0.5)
    other.run(Generator.prepare(z, classes, 0.5))
    assert other.graph_ids()[2] not in ids.values()  # ids never repeat within a process


@pytest.mark.gpu
def test_cuda_graph_frames_match_plain_cuda(tiny_onnx_fp16: Path) -> None:
    plain = Generator(tiny_onnx_fp16, device="cuda")
    graphed = Generator(tiny_onnx_fp16, device="cuda", cuda_graph=True)
    for batch in (4, 3, 4, 4):  # capture, a second size, then replays
        z, classes = latents(batch, 0.4, seed=batch)
        assert np.array_equal(graphed(z, classes, 0.4), plain(z, classes, 0.4))
