"""The OpenVINO bf16 backend: frames against ONNX Runtime fp32, the quality gate, the capability
check, the compiled-model cache, and a render through `--precision bf16`.

Real OpenVINO and ONNX Runtime sessions on the tiny model. Where this CPU has no native bf16
the bf16 runs are skipped with the reason; the gate, the refusals and the capability check
run everywhere (capabilities passed in, or a cpuinfo file named by GANTERP_CPUINFO).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import av
import media
import numpy as np
import pytest

from ganterp_fast.engine.backends.bench import quality_figures
from ganterp_fast.engine.backends.capability import BF16_CPUS, Bf16Capability, bf16_capability, parse_cpuinfo
from ganterp_fast.engine.backends.choice import export_precision, open_generator, plan_precision
from ganterp_fast.engine.backends.contract import AUTO_BF16
from ganterp_fast.engine.backends.gate import (
    GATE_PSNR_DB,
    gate_latents,
    measure_gate,
    quality_gate,
    store_gate,
    stored_gate,
)
from ganterp_fast.engine.backends.onnxruntime_generator import Generator
from ganterp_fast.engine.errors import InputError, ModelError

ov = pytest.importorskip("openvino", reason="openvino is not installed (the [cpu] extra brings it)")

from ganterp_fast.engine.backends.openvino_generator import OpenVinoGenerator  # noqa: E402  (after the importorskip)

HERE = bf16_capability()
needs_bf16 = pytest.mark.skipif(
    not HERE.native, reason=f"this CPU ({HERE.describe()}) has no native bf16 (AVX512-BF16 or AMX)"
)
VERSION = ov.__version__
# Stand-ins for CPUs this machine is not: one without bf16, one with it (for the gate's bookkeeping).
NO_BF16 = Bf16Capability("Old CPU", (), VERSION, ("FP32", "INT8"))
FAKE_AMX = Bf16Capability("Test CPU with AMX", ("amx_bf16",), VERSION, ("BF16", "FP32"))
CPUINFO_NO_BF16 = "processor\t: 0\nmodel name\t: Old CPU v2\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni\n"


@pytest.fixture(scope="module")
def fp32(tiny_onnx: Path) -> Generator:
    return Generator(tiny_onnx, device="cpu")


@pytest.fixture(scope="module")
def bf16(tiny_onnx: Path) -> OpenVinoGenerator:
    if not HERE.native:
        pytest.skip(f"this CPU ({HERE.describe()}) has no native bf16 (AVX512-BF16 or AMX)")
    return OpenVinoGenerator(tiny_onnx, precision="bf16")


# -- frames ----------------------------------------------------------------------------------


@needs_bf16
def test_bf16_frames_match_fp32_above_the_gate(bf16: OpenVinoGenerator, fp32: Generator) -> None:
    z, classes, truncations = gate_latents(8)
    frames = bf16(z, classes, truncation=truncations)
    expected = fp32(z, classes, truncation=truncations)
    assert frames.dtype == np.uint8 and frames.shape == expected.shape == (8, 128, 128, 3)
    value = media.psnr(frames, expected)
    print(f"tiny model, bf16 vs ONNX Runtime fp32: {value:.1f} dB, max {np.abs(frames.astype(int) - expected).max()}")
    assert value >= GATE_PSNR_DB
    assert bf16.providers == ["OpenVINO CPU bf16"] and bf16.device == "cpu" and bf16.resolution == 128
    assert bf16.precision == "bf16" and bf16.metadata == fp32.metadata
    assert bf16(z[:0], classes[:0]).shape == (0, 128, 128, 3)


@needs_bf16
def test_bf16_batch_invariance(bf16: OpenVinoGenerator) -> None:
    """A sample's frame does not depend on its batch: alone (batch 1), in a batch of 5, padded in a batch of 4."""
    z, classes, truncations = gate_latents(8)
    together = bf16(z[:5], classes[:5], truncation=truncations[:5])
    alone = np.concatenate([bf16(z[i : i + 1], classes[i : i + 1], truncation=truncations[i]) for i in range(5)])
    padded = bf16(z[:3], classes[:3], truncation=truncations[:3])
    np.testing.assert_array_equal(together, alone)
    np.testing.assert_array_equal(together[:3], padded)


def test_a_batch_size_met_again_gets_its_own_compiled_model(tiny_onnx: Path) -> None:
    """A short batch runs padded in a compiled larger one once (a render's last batch costs no compile);
    a size that comes again is compiled for itself, so a steady batch of 2 does not pay for 4."""
    generator = OpenVinoGenerator(tiny_onnx, precision="fp32", cache=False, first_batch=4)
    z, classes, truncations = gate_latents(2)
    padded = generator(z, classes, truncation=truncations)
    assert generator.compiled_batches == [4]
    own = generator(z, classes, truncation=truncations)
    assert generator.compiled_batches == [4, 2]
    assert np.abs(own.astype(int) - padded).max() <= 1
    alone = [generator(z[:1], classes[:1], truncation=truncations[:1]) for _ in range(2)]  # padded in 2, then its own
    assert generator.compiled_batches == [4, 2, 1]
    assert np.abs(alone[0].astype(int) - alone[1]).max() <= 1 and np.abs(alone[1].astype(int) - own[:1]).max() <= 1


def test_openvino_f32_matches_onnxruntime(tiny_onnx: Path, fp32: Generator) -> None:
    """OpenVINO in f32 (any CPU): the same inputs mean the same frames, within a level or two."""
    generator = OpenVinoGenerator(tiny_onnx, precision="fp32", cache=False)
    z, classes, truncations = gate_latents(4)
    frames = generator(z, classes, truncation=truncations)
    assert np.abs(frames.astype(int) - fp32(z, classes, truncation=truncations)).max() <= 2
    with pytest.raises(InputError, match="truncation"):
        generator(z, classes, truncation=1.5)
    with pytest.raises(InputError, match="shape"):
        generator(z[:, :10], classes)


# -- capability ------------------------------------------------------------------------------


def test_cpuinfo_flags() -> None:
    assert parse_cpuinfo("model name\t: Xeon\nflags\t: avx512f amx_bf16 avx512_bf16 amx_tile\n") == (
        "Xeon",
        ("avx512_bf16", "amx_bf16"),
    )
    assert parse_cpuinfo(CPUINFO_NO_BF16) == ("Old CPU v2", ())
    faked = bf16_capability(cpuinfo=CPUINFO_NO_BF16)
    assert not faked.native and faked.cpu_model == "Old CPU v2"
    assert not bf16_capability(cpuinfo="model name: X\nflags: amx_bf16\n", openvino_capabilities=["FP32"]).native
    assert bf16_capability(cpuinfo="model name: X\nflags: avx512_bf16\n", openvino_capabilities=["BF16"]).native


def test_bf16_refused_where_the_cpu_has_none(tiny_onnx: Path) -> None:
    with pytest.raises(InputError) as caught:
        plan_precision("bf16", "cpu", capability=NO_BF16)
    message = str(caught.value)
    assert "native bf16" in message and "Old CPU" in message and BF16_CPUS in message and "fp32" in message
    with pytest.raises(InputError, match="native bf16"):
        OpenVinoGenerator(tiny_onnx, precision="bf16", capability=NO_BF16)
    with pytest.raises(InputError, match="fp16"):
        plan_precision("bf16", "cuda", capability=FAKE_AMX)


def test_plan_precision() -> None:
    assert plan_precision("auto", "cpu", capability=NO_BF16) == "fp32"
    assert plan_precision("auto", "cpu", capability=FAKE_AMX) == AUTO_BF16
    assert plan_precision("auto", "cuda", capability=FAKE_AMX) == "fp16"
    assert plan_precision("bf16", "cpu", capability=FAKE_AMX) == "bf16"
    assert plan_precision("fp32", "cpu", capability=FAKE_AMX) == "fp32"
    assert plan_precision("int8", "cpu", capability=FAKE_AMX) == "int8"
    # A ready model keeps its own precision under auto; only an fp32 one may run in bf16.
    assert plan_precision("auto", "cpu", model_precision="int8", capability=FAKE_AMX) == "int8"
    assert plan_precision("auto", "cpu", model_precision="fp32", capability=FAKE_AMX) == AUTO_BF16
    assert plan_precision("auto", "cuda", model_precision="fp32", capability=FAKE_AMX) == "fp32"
    assert [export_precision(p) for p in ("bf16", AUTO_BF16, "fp32", "fp16", "int8")] == [
        "fp32",
        "fp32",
        "fp32",
        "fp16",
        "int8",
    ]


def test_fp32_stays_onnxruntime(tiny_onnx: Path) -> None:
    generator = open_generator(tiny_onnx, device="cpu", precision="fp32", capability=FAKE_AMX)
    assert isinstance(generator, Generator) and generator.providers == ["CPUExecutionProvider"]
    generator = open_generator(tiny_onnx, device="cpu", precision=AUTO_BF16, capability=NO_BF16)
    assert isinstance(generator, Generator)


# -- the quality gate ------------------------------------------------------------------------


class Perturbed:
    """A stand-in generator: ONNX Runtime's fp32 frames with noise added (about 25 dB)."""

    def __init__(self, generator: Generator) -> None:
        self.generator = generator
        self.rng = np.random.default_rng(0)

    def __call__(self, z, class_vectors, truncation=0.4) -> np.ndarray:
        frames = self.generator(z, class_vectors, truncation=truncation).astype(np.int16)
        noise = self.rng.normal(0, 14, frames.shape).round().astype(np.int16)
        return np.clip(frames + noise, 0, 255).astype(np.uint8)


class NeverCalled:
    """A stand-in generator for a gate that must not measure again."""

    def __call__(self, *args, **kwargs) -> np.ndarray:
        raise AssertionError("the gate measured again instead of reading its stored figures")


def test_gate_refuses_a_model_that_fails(tiny_onnx: Path, fp32: Generator) -> None:
    result = measure_gate(tiny_onnx, Perturbed(fp32), capability=FAKE_AMX)
    assert not result.passed and result.psnr_db < GATE_PSNR_DB and result.max_abs_error > 20
    assert result.cpu == FAKE_AMX.kind and result.openvino == VERSION and result.samples == 8
    store_gate(tiny_onnx, result, FAKE_AMX)
    assert stored_gate(tiny_onnx, capability=FAKE_AMX) == result
    assert quality_gate(tiny_onnx, NeverCalled(), capability=FAKE_AMX) == result  # stored: not measured again
    with pytest.raises(ModelError) as caught:
        open_generator(tiny_onnx, device="cpu", precision="bf16", capability=FAKE_AMX)
    message = str(caught.value)
    assert f"PSNR {result.psnr_db:.1f} dB" in message and "max error" in message and "--precision fp32" in message
    # auto falls back to the exact fp32 path for this model.
    generator = open_generator(tiny_onnx, device="cpu", precision=AUTO_BF16, capability=FAKE_AMX)
    assert isinstance(generator, Generator)
    # Another CPU kind has its own figures: none measured yet.
    assert stored_gate(tiny_onnx, capability=Bf16Capability("Other", ("avx512_bf16",), VERSION, ("BF16",))) is None


@needs_bf16
def test_gate_passes_and_is_stored(tiny_onnx: Path, bf16: OpenVinoGenerator) -> None:
    result = quality_gate(tiny_onnx, bf16)
    assert result.passed and result.psnr_db >= GATE_PSNR_DB and 0 < result.max_abs_error < 64
    assert stored_gate(tiny_onnx) == result and result.cpu == HERE.kind
    generator = open_generator(tiny_onnx, device="cpu", precision=AUTO_BF16)
    assert generator.providers == ["OpenVINO CPU bf16"]
    figures = quality_figures(generator)
    assert figures["psnr_db"] == result.psnr_db and figures["max_abs_error"] == result.max_abs_error
    assert quality_figures(Generator(tiny_onnx, device="cpu")) is None


# -- the compiled-model cache ----------------------------------------------------------------


@needs_bf16
def test_compiled_model_cache(tiny_onnx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GANTERP_CACHE_DIR", str(tmp_path / "cache"))
    z, classes, truncations = gate_latents(4)
    began = time.perf_counter()
    first = OpenVinoGenerator(tiny_onnx)
    cold = time.perf_counter() - began
    expected = first(z, classes, truncation=truncations)
    blobs = sorted((tmp_path / "cache" / "openvino" / "compiled").glob("*/*.blob"))
    assert blobs, "nothing was cached"
    began = time.perf_counter()
    second = OpenVinoGenerator(tiny_onnx)
    warm = time.perf_counter() - began
    print(f"tiny model start: {cold:.2f} s compiling, {warm:.2f} s from the cache")
    np.testing.assert_array_equal(second(z, classes, truncation=truncations), expected)
    junk = b"not a compiled model" * 10
    for blob in blobs:  # a damaged entry: rebuilt, never used
        blob.write_bytes(junk)
    third = OpenVinoGenerator(tiny_onnx)
    np.testing.assert_array_equal(third(z, classes, truncation=truncations), expected)
    assert all(blob.stat().st_size > 100 * len(junk) for blob in blobs), "the damaged entry was not rebuilt"


# -- the command line ------------------------------------------------------------------------


def cli(*args: object, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run(
        [sys.executable, "-m", "ganterp_fast", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


SONG = media.Song(seconds=2.0)  # conftest's `song`


def test_cli_bf16_without_native_bf16_is_exit_2(song: Path, tiny_onnx: Path, tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(CPUINFO_NO_BF16)
    out = tmp_path / "out.mp4"
    result = cli(
        "render", song, "-o", out, "--model", tiny_onnx, "--precision", "bf16", "-q", env={"GANTERP_CPUINFO": cpuinfo}
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert "native bf16" in lines[0] and "Old CPU v2" in lines[0] and "AMX" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cpuinfo"]


def test_cli_auto_precision_follows_the_cpu(song: Path, tiny_onnx: Path, tmp_path: Path) -> None:
    """--precision auto (the default): bf16 through OpenVINO where native, ONNX Runtime fp32 where not."""
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(CPUINFO_NO_BF16)
    args = ("render", song, "--model", tiny_onnx, "--fps", "6", "--preset", "ultrafast", "-v", "-y")
    plain = cli(*args, "-o", tmp_path / "old-cpu.mp4", env={"GANTERP_CPUINFO": cpuinfo})
    assert plain.returncode == 0, plain.stderr
    assert "(CPUExecutionProvider)" in plain.stderr and "OpenVINO CPU bf16" not in plain.stderr
    if not HERE.native:
        return
    here = cli(*args, "-o", tmp_path / "here.mp4")
    assert here.returncode == 0, here.stderr
    assert "(OpenVINO CPU bf16)" in here.stderr and "held-out latents: PSNR" in here.stderr


@needs_bf16
def test_cli_render_bf16(song: Path, tiny_onnx: Path, tmp_path: Path) -> None:
    outputs = {}
    for precision in ("bf16", "fp32"):
        outputs[precision] = tmp_path / f"{precision}.mp4"
        result = cli(
            "render", song, "-o", outputs[precision], "--model", tiny_onnx, "--precision", precision,
            "--fps", "12", "--crf", "10", "--preset", "ultrafast", "-v",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        if precision == "bf16":
            assert "OpenVINO CPU bf16" in result.stderr and "held-out latents: PSNR" in result.stderr
    decoded = {}
    for precision, path in outputs.items():
        with av.open(str(path)) as container:
            decoded[precision] = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    assert decoded["bf16"].shape == decoded["fp32"].shape and len(decoded["bf16"]) == 24
    value = media.psnr(decoded["bf16"], decoded["fp32"])
    print(f"bf16 render vs fp32 render, decoded: {value:.1f} dB")
    assert value >= 30  # 35 dB between raw frames, less after H.264 of each
