"""Model planning: which model file a render runs, on which device, in which precision and batch.

`plan_model` is a pure function of the options, the model's metadata and the providers this
machine offers; it runs on the driver before any model work, so a wrong option fails at
once. The `ModelPlan` it returns is plain data: it travels with the render job and is
opened (`ModelPlan.open`) where the frames are made.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ganterp_fast.engine.backends.base import FrameGenerator
from ganterp_fast.engine.backends.choice import export_precision, open_generator, plan_precision
from ganterp_fast.engine.backends.contract import NUM_CLASSES, Z_DIM, is_ready_model, read_metadata
from ganterp_fast.engine.backends.foreign import Wrapped, is_foreign, wrapped
from ganterp_fast.engine.backends.hub import ready_model
from ganterp_fast.engine.backends.machine import physical_cores, usable_cpus
from ganterp_fast.engine.backends.preparation import ModelProgress
from ganterp_fast.engine.backends.roles import Roles, parse_inputs
from ganterp_fast.engine.errors import InputError
from ganterp_fast.engine.fields import error
from ganterp_fast.engine.options import ModelOptions


def default_batch_size(device: str, resolution: int) -> int:
    """CPU: small batches (no gain past ~4, and a short wait for the first frames); CUDA: large."""
    if device.startswith("cuda"):
        return {128: 64, 256: 32}.get(resolution, 16)
    return 4


def planned_device(device: str, *, tensorrt: bool = False, cuda_graph: bool = False, threads: int | None = None) -> str:
    """The device a generator asked for `device` will most likely run on ("cpu", "cuda" or "cuda:N").

    Checks the providers' side of the options at once (TensorRT or CUDA asked for where ONNX
    Runtime does not offer them, threads past the CPUs): `ProviderError` / `InputError`.
    """
    from ganterp_fast.engine.backends.onnxruntime_generator import import_onnxruntime
    from ganterp_fast.engine.backends.providers import plan_providers

    plan = plan_providers(
        import_onnxruntime().get_available_providers(),
        device=device,
        tensorrt=tensorrt,
        cuda_graph=cuda_graph,
        threads=threads,
    )
    return device if device != "auto" else plan.device


@dataclass(frozen=True)
class ModelPlan:
    """Which model file to run, where and how: chosen in `prepare`, opened where frames are made."""

    options: ModelOptions
    device: str  # the planned device ("cpu", "cuda", "cuda:N")
    precision: str  # the precision the generator runs in
    resolution: int  # the frames' height (their side where square)
    batch_size: int
    z_dim: int = Z_DIM  # the latent's width
    num_classes: int = NUM_CLASSES  # the class input's width; 0: unconditional
    width: int | None = None  # the frames' width where it differs from their height
    truncation_input: bool = True  # the truncation reaches the graph (else it only scales z)
    foreign: bool = False  # a foreign generator, wrapped (backends.foreign)

    @property
    def z_truncated(self) -> bool:
        """z is scaled by the truncation before the graph (BigGAN, and any graph with no truncation input)."""
        return not (self.foreign and self.truncation_input)

    @property
    def ready(self) -> bool:
        """A ready .onnx is used as it is: no export, no precision choice."""
        return is_ready_model(self.options.model)

    def resolve(self, progress: Callable[[ModelProgress], None] | None = None) -> Path:
        """The .onnx file, exported into the cache once for a name or a checkpoint directory.

        `progress` gets the export's steps with an ETA (`models.resolve_model`).
        """
        from ganterp_fast.engine.backends.models import resolve_model

        if self.foreign:  # wrapped when planned: the same process finds it without reading the file again
            return _wrap(self.options, ready_model(self.options.model)).path
        return resolve_model(
            self.options.model,
            precision=export_precision(self.precision),
            weights=self.options.weights,
            seed=self.options.weights_seed,
            progress=progress,
        )

    def open(
        self,
        model_path: str | os.PathLike[str] | None = None,
        progress: Callable[[ModelProgress], None] | None = None,
    ) -> FrameGenerator:
        """The generator for this plan (from `model_path` if the file is here already)."""
        path = Path(model_path) if model_path is not None else self.resolve(progress)
        opts = self.options
        generator = open_generator(
            path,
            device=opts.device,
            precision=self.precision,
            threads=opts.threads,
            tensorrt=opts.tensorrt,
            cuda_graph=opts.cuda_graph,
        )
        if generator.resolution != self.resolution:
            raise InputError(f"{path} makes {generator.resolution} px frames, the job expects {self.resolution} px")
        return generator


def plan_model(options: ModelOptions) -> ModelPlan:
    """The model plan: a pure function of the options, the model's metadata and the providers here."""
    from ganterp_fast.engine.backends.contract import check_metadata, model_precision
    from ganterp_fast.engine.backends.models import model_resolution

    limit = max(physical_cores(), usable_cpus())  # more threads than CPUs only make the workers fight
    if options.threads is not None and options.threads > limit:
        rule = f"{options.threads}: use 1 to {limit} (the CPUs here), or leave it unset for one per physical core"
        raise error(options, "threads", rule)
    device = planned_device(
        options.device, tensorrt=options.tensorrt, cuda_graph=options.cuda_graph, threads=options.threads
    )
    path = ready_model(options.model, weights=options.weights)
    metadata = read_metadata(path) if path is not None else None
    if metadata is not None and is_foreign(metadata):
        roles = _wrap(options, path).roles  # wrapped once into the cache: the plan and the workers share it
        return _foreign_plan(options, device, roles)
    if metadata is not None:
        check_metadata(metadata, path)
        exported = model_precision(metadata)
        resolution = int(metadata["ganterp_fast.resolution"])
        precision = plan_precision(options.precision, device, model_precision=exported)
        if export_precision(precision) != exported:
            raise InputError(
                f"--precision {options.precision} asked for, but {path} is a ready {exported} model; "
                f"leave --precision at auto, or export the model with --precision {options.precision}"
            )
    else:
        resolution = model_resolution(options.model)
        precision = plan_precision(options.precision, device)
    batch_size = options.batch_size or default_batch_size(device, resolution)
    return ModelPlan(options=options, device=device, precision=precision, resolution=resolution, batch_size=batch_size)


def _wrap(options: ModelOptions, path: Path) -> Wrapped:
    """The foreign graph at `path` (the local file of `options.model`, a Hub file too) wrapped once into the cache."""
    return wrapped(path, inputs=parse_inputs(options.model_inputs), value_range=options.model_range)


def _foreign_plan(options: ModelOptions, device: str, roles: Roles) -> ModelPlan:
    """The plan of a wrapped foreign generator: its own precision (fp16 graphs on CUDA only), sizes and inputs."""
    exported = "fp16" if roles.latent_dtype == "float16" else "fp32"
    precision = plan_precision(options.precision, device, model_precision=exported)
    if export_precision(precision) != exported:
        raise InputError(
            f"--precision {options.precision} asked for, but {options.model} is a {exported} generator; "
            "leave --precision at auto"
        )
    batch_size = options.batch_size or roles.batch or default_batch_size(device, roles.height)
    return ModelPlan(
        options=options,
        device=device,
        precision=precision,
        resolution=roles.height,
        batch_size=batch_size,
        z_dim=roles.z_dim,
        num_classes=roles.num_classes,
        width=roles.width if roles.width != roles.height else None,
        truncation_input=roles.truncation is not None,
        foreign=True,
    )
