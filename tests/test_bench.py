"""`ganterp-fast bench` on the CPU with the tiny model, device ids, and the bench's errors.

Real ONNX Runtime sessions and real timings (kept to fractions of a second); no figure is
asserted as fast or slow, only that the figures agree with each other.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import media
import pytest

from ganterp_fast.cli.main import main
from ganterp_fast.engine.backends.bench import describe_precision, gflop_per_image, parse_int_list, useful_figures
from ganterp_fast.engine.backends.contract import AUTO_BF16, parse_device
from ganterp_fast.engine.backends.peak import gemm_peak
from ganterp_fast.engine.backends.providers import CPU, CUDA, TENSORRT, plan_providers
from ganterp_fast.engine.errors import InputError

BATCHES = (1, 2)


def cuda_really_available() -> bool:
    try:
        import onnxruntime
    except ImportError:
        return False
    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


# -- device strings and ids (pure) ------------------------------------------------------------


def test_parse_device() -> None:
    assert parse_device("cuda:1") == ("cuda", 1)
    assert parse_device("cuda") == ("cuda", 0)
    assert parse_device("CPU") == ("cpu", 0)
    assert parse_device("auto") == ("auto", 0)
    for bad in ("gpu", "cuda:", "cuda:x", "cpu:1", "cuda:-1", ""):
        with pytest.raises(InputError, match="cuda:N"):
            parse_device(bad)


def test_plan_providers_device_id(tmp_path: Path) -> None:
    plan = plan_providers([TENSORRT, CUDA, CPU], device="cuda:2", precision="fp16", tensorrt=True)
    assert plan.device == "cuda" and plan.device_id == 2
    options = dict(plan.providers)
    assert options[CUDA]["device_id"] == "2" and options[TENSORRT]["device_id"] == "2"
    assert plan.without_cuda_graph().device_id == 2
    plan = plan_providers([CUDA, CPU], device="cuda", device_id=3)
    assert dict(plan.providers)[CUDA]["device_id"] == "3" and plan.device_id == 3
    assert plan_providers([CUDA, CPU], device="auto").device_id == 0
    with pytest.raises(InputError, match="device_id"):
        plan_providers([CUDA, CPU], device="cuda:1", device_id=2)
    with pytest.raises(InputError, match="cuda:N"):
        plan_providers([CUDA, CPU], device="cuda:one")


def test_render_takes_a_device_id(tiny_onnx: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """ModelOptions and `render --device` accept cuda:N; without a GPU it is a one-line exit 2, nothing written."""
    from ganterp_fast.engine.options import ModelOptions

    assert ModelOptions(device="cuda:1").device == "cuda:1"
    with pytest.raises(InputError, match="cuda:N"):
        ModelOptions(device="gpu:1")
    if cuda_really_available():
        pytest.skip("ONNX Runtime offers CUDA here: the no-GPU error cannot be shown")
    song = media.write_soundfile(tmp_path / "song.wav", media.music(16000, 2.0), 16000)
    out = tmp_path / "song.mp4"
    assert main(["render", str(song), "-o", str(out), "--model", str(tiny_onnx), "--device", "cuda:1"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert "device 'cuda:1' asked for" in lines[-1] and "Traceback" not in "".join(lines)
    assert not out.exists()


def test_figures() -> None:
    assert gflop_per_image(128, 128) == 17.9 and gflop_per_image(512, None) == 76.0
    assert gflop_per_image(128, 16) is None  # narrow test models: no useful-work figure
    assert useful_figures(10.0, 17.9, 358.0) == {"useful_gflops": 179.0, "share_of_peak": 0.5}
    assert useful_figures(10.0, None, 358.0) == {"useful_gflops": None, "share_of_peak": None}
    assert parse_int_list("1, 4,4,16", what="--batch-sizes", example="1,4") == (1, 4, 16)
    for bad in ("0", "1,x", "", "1,,2", "-1"):
        with pytest.raises(InputError, match="--batch-sizes"):
            parse_int_list(bad, what="--batch-sizes", example="1,4")


def test_gemm_peaks_through_the_runtimes() -> None:
    """fp32 through numpy's sgemm, int8 through ONNX Runtime's MatMulInteger, bf16 through OpenVINO."""
    fp32 = gemm_peak("cpu", "fp32", seconds=0.05)
    assert fp32["gflops"] > 0 and "numpy" in fp32["method"] and fp32["gflops"] >= fp32["gflops_median"]
    pytest.importorskip("onnx")
    int8 = gemm_peak("cpu", "int8", seconds=0.05)
    assert int8["gflops"] > 0 and "MatMulInteger" in int8["method"]
    pytest.importorskip("openvino", reason="OpenVINO is not installed: no bf16 GEMM")
    bf16 = gemm_peak("cpu", "bf16", seconds=0.05)
    assert bf16["gflops"] > 0 and "OpenVINO" in bf16["method"]


# -- the command on the CPU --------------------------------------------------------------------


@pytest.fixture(scope="module")
def bench_run(tiny_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict, Path]:
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    argv = ["bench", str(tiny_onnx), "--device", "cpu", "--precision", "fp32", "--batch-sizes", "1,2"]
    argv += ["--seconds", "0.3", "--json", str(out), "-q"]
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert main(argv) == 0
    return stdout.getvalue(), json.loads(out.read_text()), out


def test_bench_table_and_json_agree(bench_run: tuple[str, dict, Path], tiny_onnx: Path) -> None:
    table, report, _ = bench_run
    assert "| model | px | precision | device | providers | batch | images/s | p50 ms | p95 ms |" in table
    assert "Xeon" in table or report["device"]["cpu"]["name"] in table
    (model,) = report["models"]
    assert model["model"] == str(tiny_onnx) and model["resolution"] == 128 and model["channel_width"] == 16
    assert model["device"] == "cpu" and model["providers"] == [CPU] and model["precision"] == "fp32"
    assert [point["batch"] for point in model["points"]] == list(BATCHES)
    for point in model["points"]:
        rate, p50, p95 = point["images_per_s"], point["latency_ms_p50"], point["latency_ms_p95"]
        assert rate > 0 and 0 < p50 <= p95 and point["runs"] >= 3
        # images/s x latency per batch = the batch (the rate is the median call's).
        assert rate * p50 / 1000 == pytest.approx(point["batch"], rel=0.01)
        # The window's own rate agrees within the noise of a shared machine.
        assert 0.33 < point["images_per_s_window"] / rate < 3
        assert f"| {point['batch']} | {rate:.2f} | {p50:.1f} | {p95:.1f} |" in table
        assert point["useful_gflops"] is None  # channel_width 16: not a full-size model
    best = max(model["points"], key=lambda point: point["images_per_s"])
    assert (model["best_batch_size"], model["best_images_per_s"]) == (best["batch"], best["images_per_s"])
    assert f"best batch for {model['name']} (128 px, fp32): {best['batch']}" in table
    peak = report["peaks"][model["peak"]]
    assert peak["gflops"] > 0 and peak["precision"] == "fp32" and f"{peak['gflops']:.0f} GFLOP/s" in table
    cpu = report["device"]["cpu"]
    assert cpu["name"] and cpu["logical_cpus"] >= 1 and cpu["physical_cores"] >= 1 and isinstance(cpu["flags"], list)
    assert report["versions"]["onnxruntime"] and report["versions"]["python"]
    assert report["date"].startswith("20") and report["settings"]["seconds"] == 0.3
    assert report["settings"]["batch_sizes"] == list(BATCHES) and report["settings"]["device"] == "cpu"
    assert set(report["load_average_1min"]) == {"before", "after"}


def test_bench_json_is_not_replaced_without_overwrite(
    bench_run: tuple[str, dict, Path], tiny_onnx: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, _, out = bench_run
    before = out.read_text()
    assert main(["bench", str(tiny_onnx), "--device", "cpu", "--json", str(out), "-q"]) == 2
    assert "--overwrite" in capsys.readouterr().err and out.read_text() == before


def _error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ganterp-fast bench: error: "), captured.err
    assert "Traceback" not in captured.err
    return lines[0]


def test_bench_cuda_without_a_gpu_is_one_line(
    tiny_onnx: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if cuda_really_available():
        pytest.skip("ONNX Runtime offers CUDA here: the no-GPU error cannot be shown")
    out = tmp_path / "b.json"
    for device in ("cuda", "cuda:1"):
        line = _error(["bench", str(tiny_onnx), "--device", device, "--json", str(out)], capsys)
        assert "cuda" in line and "cpu" in line
    assert not out.exists()


def test_bench_bad_inputs_are_one_line(tiny_onnx: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "b.json"
    line = _error(["bench", str(tmp_path / "missing.onnx"), "--device", "cpu", "--json", str(out)], capsys)
    assert "missing.onnx" in line and "does not exist" in line
    line = _error(["bench", str(tmp_path / "nowhere"), "--device", "cpu"], capsys)
    assert "nowhere" in line
    for batches in ("1,x", "0", "4,,8"):
        line = _error(["bench", str(tiny_onnx), "--device", "cpu", "--batch-sizes", batches], capsys)
        assert "--batch-sizes" in line and "1,4,16,64" in line
    line = _error(["bench", "--resolutions", "100", "--device", "cpu"], capsys)
    assert "--resolutions" in line and "128, 256, 512" in line
    line = _error(["bench", str(tiny_onnx), "--device", "tpu"], capsys)
    assert "tpu" in line and "cuda:N" in line
    line = _error(["bench", str(tiny_onnx), "--device", "cpu", "--precision", "fp16"], capsys)
    assert "fp32 model" in line
    line = _error(["bench", str(tiny_onnx), "--device", "cpu", "--seconds", "0"], capsys)
    assert "seconds" in line
    assert not out.exists()


# -- the torch-free runtime environment --------------------------------------------------------


def test_bench_in_the_runtime_environment(tiny_onnx: Path, tmp_path: Path) -> None:
    """An .onnx benches with the runtime alone; a model name says how to get a model."""
    python = os.environ.get("GANTERP_RUNTIME_PYTHON")
    if not python:
        pytest.skip("GANTERP_RUNTIME_PYTHON is not set: scripts/test.sh builds a runtime-only environment and sets it")
    has_torch = subprocess.run([python, "-c", "import torch"], capture_output=True, cwd=tmp_path)
    assert has_torch.returncode != 0, "the runtime environment must not have torch"
    env = {**os.environ, "GANTERP_CACHE_DIR": str(tmp_path / "cache")}
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [python, "-m", "ganterp_fast", "bench", str(tiny_onnx), "--device", "cpu", "--precision", "fp32"]
        + ["--batch-sizes", "2", "--seconds", "0.2", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert "torch" not in report["versions"] and report["models"][0]["best_batch_size"] == 2
    assert "| tiny" in result.stdout or "| biggan-tiny" in result.stdout
    assert "batch 2" in result.stderr  # progress on stderr
    result = subprocess.run(
        [python, "-m", "ganterp_fast", "bench", "--resolutions", "128", "--device", "cpu"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=env,
    )
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert "[export]" in last and ".onnx" in last and "ganterp-fast export biggan-deep-128" in last


def test_bench_module_runs_without_the_cli() -> None:
    """The library entry point imports without torch or the CLI (what the runtime install needs)."""
    code = (
        "import sys, ganterp_fast.engine.backends.bench as b; assert 'torch' not in sys.modules; print(b.RESOLUTIONS)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "128" in result.stdout, result.stderr


# -- on a GPU (skipped elsewhere) ----------------------------------------------------------------


@pytest.mark.gpu
def test_bench_on_cuda(tiny_onnx_fp16: Path, tmp_path: Path) -> None:
    """The fp16 tiny model on cuda:0 with CUDA graphs: CUDA ran, the GPU is named, an fp16 GEMM peak."""
    out = tmp_path / "gpu.json"
    stdout = io.StringIO()
    argv = ["bench", str(tiny_onnx_fp16), "--device", "cuda:0", "--batch-sizes", "1,8", "--seconds", "0.3"]
    with contextlib.redirect_stdout(stdout):
        assert main([*argv, "--cuda-graph", "--json", str(out), "-q"]) == 0
    report = json.loads(out.read_text())
    (model,) = report["models"]
    assert model["device"] == "cuda:0" and model["providers"][0] == CUDA and model["precision"] == "fp16"
    assert all(point["images_per_s"] > 0 for point in model["points"])
    peak = report["peaks"][model["peak"]]
    assert peak["precision"] == "fp16" and peak["gflops"] > 0 and "CUDA" in peak["method"]
    assert report["device"]["gpu"].get("name") or report["device"]["gpu"] == {}
    assert "cuda:0" in stdout.getvalue()


def test_preparing_names_the_precision_that_runs() -> None:
    """`preparing biggan-deep-128 (...)` names what will run, and the export it reads: bf16 is not fp32."""
    assert describe_precision("bf16") == "bf16, from its fp32 export"
    assert describe_precision(AUTO_BF16) == "bf16 if it passes its quality gate, else fp32, from its fp32 export"
    assert [describe_precision(precision) for precision in ("fp32", "fp16", "int8")] == ["fp32", "fp16", "int8"]
