"""Foreign generators: any ONNX image generator, read with `onnx` and wrapped once so that it
too takes `z` [N, D] (and `class_vector` [N, C], `truncation` [N] where it has them) and
hands out `frames`, uint8 [N, H, W, 3], like this project's exports.

The wrapper prefixes the foreign graph's names, feeds its inputs from the new ones (casting
to float16 where the graph computes in it, a scalar psi from the batch's first value) and
appends Transpose, the scale of its value range to 0..255 (`clip((x + 1) * 128, 0, 255)` as
the exports do), Clip and Cast. Wrapped files live in the cache under the source file's
sha256 and the roles, with metadata saying what was assigned (`kind=foreign`). A process reads
and hashes a source file once: planning a render and resolving its model share the wrapping
(`wrapped`, kept per file, size, modification time and roles asked for).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ganterp_fast.engine.backends.contract import FORMAT_VERSION, META_PREFIX, OUTPUT_NAME
from ganterp_fast.engine.backends.roles import Roles, Tensor, assign_roles
from ganterp_fast.engine.cache import cache_dir, file_sha256
from ganterp_fast.engine.errors import MissingExtraError, ModelError

log = logging.getLogger(__name__)

FOREIGN = "foreign"
WRAP_VERSION = "1"  # part of the cache key: a change of the wrapping never reuses an old file
STANDARD_DOMAINS = ("", "ai.onnx", "com.microsoft")  # ONNX's own operators, and ONNX Runtime's
LATENT_NAME, CLASS_NAME, TRUNCATION_NAME = "z", "class_vector", "truncation"
_PREFIX = "source/"


def is_foreign(metadata: Mapping[str, str]) -> bool:
    """Whether a model's metadata marks no ganterp-fast export (a foreign graph not yet wrapped)."""
    return META_PREFIX + "format_version" not in metadata


def wrapped_roles(metadata: Mapping[str, str]) -> Roles | None:
    """The roles a wrapped foreign graph records; None for one of this project's exports."""
    if metadata.get(META_PREFIX + "kind") != FOREIGN:
        return None
    return Roles(**json.loads(metadata[META_PREFIX + "roles"]))


def _onnx() -> Any:
    try:
        import onnx
    except ImportError as exc:
        raise MissingExtraError("reading a model", "cpu") from exc
    return onnx


def load_graph(path: Path, *, external: bool) -> Any:
    """The ONNX model at `path` (`external`: with its external data); `ModelError` for what is not one."""
    onnx = _onnx()
    try:
        return onnx.load(str(path), load_external_data=external)
    except OSError as exc:
        raise ModelError(f"cannot read the model {path}: {exc.strerror or exc}") from exc
    except Exception as exc:  # protobuf's DecodeError
        raise ModelError(f"{path} is not an ONNX model, or only part of one (onnx cannot parse it)") from exc


def signature(model: Any) -> tuple[list[Tensor], list[Tensor]]:
    """The graph's inputs (initializers left out) and outputs, their shapes inferred where the graph omits them."""
    onnx = _onnx()
    initializers = {item.name for item in model.graph.initializer}

    def tensor(value: Any) -> Tensor:
        kind = value.type.tensor_type
        dtype = onnx.helper.tensor_dtype_to_np_dtype(kind.elem_type).name if kind.elem_type else "unknown"
        dims = tuple(d.dim_value if d.HasField("dim_value") else None for d in kind.shape.dim)
        return Tensor(value.name, {"float32": "float"}.get(dtype, dtype), dims)

    inputs = [tensor(item) for item in model.graph.input if item.name not in initializers]
    outputs = [tensor(item) for item in model.graph.output]
    if any(len(item.shape) == 0 or None in item.shape[1:] for item in outputs):
        try:
            inferred = onnx.shape_inference.infer_shapes(model)
            outputs = [tensor(item) for item in inferred.graph.output]
        except Exception as exc:  # shapes stay as declared
            log.debug("shape inference failed: %s", exc)
    return inputs, outputs


def check_operators(path: Path, model: Any) -> None:
    """`ModelError` naming the operators of domains ONNX Runtime does not run out of the box."""
    nodes = model.graph.node
    custom = sorted({f"{node.domain}.{node.op_type}" for node in nodes if node.domain not in STANDARD_DOMAINS})
    if custom:
        raise ModelError(f"{path} needs custom operators ({', '.join(custom)}); a generator must use ONNX's own")


def read_roles(
    path: str | os.PathLike[str], *, inputs: Mapping[str, str] | None = None, value_range: str = "-1,1"
) -> Roles:
    """The roles of a foreign graph (external data not read)."""
    path = Path(path)
    model = load_graph(path, external=False)
    check_operators(path, model)
    found_inputs, found_outputs = signature(model)
    return assign_roles(str(path), found_inputs, found_outputs, named=inputs, value_range=value_range)


@dataclass(frozen=True)
class Wrapped:
    """A foreign generator wrapped into the cache: the wrapped file and the roles it was wrapped with."""

    path: Path
    roles: Roles


def wrap_foreign(
    path: str | os.PathLike[str], *, inputs: Mapping[str, str] | None = None, value_range: str = "-1,1"
) -> Path:
    """The wrapped graph of the foreign generator at `path`, built into the cache once."""
    return wrapped(path, inputs=inputs, value_range=value_range).path


def wrapped(
    path: str | os.PathLike[str], *, inputs: Mapping[str, str] | None = None, value_range: str = "-1,1"
) -> Wrapped:
    """The foreign generator at `path` wrapped once into the cache, and its roles.

    The source is read and hashed once per process while it stays unchanged (path, size,
    modification time, inode) and its wrapped file stays in the cache.
    """
    path = Path(path)
    try:
        stat = path.stat()
    except OSError as exc:
        raise ModelError(f"cannot read the model {path}: {exc.strerror or exc}") from exc
    named = tuple(sorted((inputs or {}).items()))
    args = (str(path.absolute()), stat.st_size, stat.st_mtime_ns, stat.st_ino, named, value_range, str(cache_dir()))
    found = _wrapped_memo(*args)
    if not found.path.is_file():  # the cache entry was removed since: wrap again
        _wrapped_memo.cache_clear()
        found = _wrapped_memo(*args)
    return found


@functools.lru_cache(maxsize=8)
def _wrapped_memo(
    source: str,
    size: int,
    mtime_ns: int,
    inode: int,
    named: tuple[tuple[str, str], ...],
    value_range: str,
    cache: str,
) -> Wrapped:
    del size, mtime_ns, inode  # the cache key only: a file written again is read again
    path = Path(source)
    roles = read_roles(path, inputs=dict(named) or None, value_range=value_range)
    digest = file_sha256(path)
    key = json.dumps({"sha256": digest, "roles": asdict(roles), "wrap": WRAP_VERSION}, sort_keys=True)
    directory = Path(cache) / "foreign"
    entry = directory / f"{path.stem[:40]}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.onnx"
    if not entry.is_file():
        _write_wrapped(path, entry, roles, digest)
    return Wrapped(entry, roles)


def _write_wrapped(path: Path, entry: Path, roles: Roles, digest: str) -> None:
    """The wrapped graph of `path` written atomically to `entry`, with the metadata of what was assigned."""
    onnx = _onnx()
    model = wrap_model(load_graph(path, external=True), roles)
    for name, value in (
        ("format_version", FORMAT_VERSION),
        ("kind", FOREIGN),
        ("roles", json.dumps(asdict(roles), sort_keys=True)),
        ("source", path.name),
        ("source_sha256", digest),
        ("resolution", str(roles.height)),
        ("precision", "fp16" if roles.latent_dtype == "float16" else "fp32"),
        ("inputs", ",".join(wrapped_inputs(roles))),
        ("outputs", OUTPUT_NAME),
    ):
        entry_prop = model.metadata_props.add()
        entry_prop.key, entry_prop.value = META_PREFIX + name, value
    directory = entry.parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
        temporary = directory / f".{entry.name}.{os.getpid()}.partial"
        onnx.save(model, str(temporary))
        os.replace(temporary, entry)
    except OSError as exc:
        raise ModelError(f"cannot write the wrapped model {entry}: {exc.strerror or exc}") from exc
    log.info("wrapped the foreign generator %s into %s", path, entry)


def wrapped_inputs(roles: Roles) -> tuple[str, ...]:
    """The wrapped graph's input names, in order."""
    names = [LATENT_NAME]
    if roles.class_input is not None:
        names.append(CLASS_NAME)
    if roles.truncation is not None:
        names.append(TRUNCATION_NAME)
    return tuple(names)


def wrap_model(model: Any, roles: Roles) -> Any:
    """The foreign model with its names prefixed, fed from z/class_vector/truncation, out as uint8 NHWC frames."""
    onnx = _onnx()
    helper, proto = onnx.helper, onnx.TensorProto
    source = onnx.compose.add_prefix(model, _PREFIX)
    graph = source.graph
    opset = max((item.version for item in source.opset_import if item.domain in ("", "ai.onnx")), default=13)
    nodes, new_inputs = [], []
    batch = roles.batch if roles.batch is not None else "batch"

    def feed(name: str, target: str, width: int | None, dtype: str) -> None:
        shape = [batch] if width is None else [batch, width]
        new_inputs.append(helper.make_tensor_value_info(name, proto.FLOAT, shape))
        to = proto.FLOAT16 if dtype == "float16" else proto.FLOAT
        nodes.append(helper.make_node("Cast", [name], [_PREFIX + target], to=to))

    feed(LATENT_NAME, roles.latent, roles.z_dim, roles.latent_dtype)
    if roles.class_input is not None:
        feed(CLASS_NAME, roles.class_input, roles.num_classes, _dtype_of(source, _PREFIX + roles.class_input))
    if roles.truncation is not None:
        psi = _PREFIX + roles.truncation
        dtype = _dtype_of(source, psi)
        if roles.truncation_rank == 0:  # one psi for the batch: the first sample's
            new_inputs.append(helper.make_tensor_value_info(TRUNCATION_NAME, proto.FLOAT, [batch]))
            graph.initializer.append(helper.make_tensor("wrap/first", proto.INT64, [], [0]))
            nodes.append(helper.make_node("Gather", [TRUNCATION_NAME, "wrap/first"], ["wrap/psi"], axis=0))
            to = proto.FLOAT16 if dtype == "float16" else proto.FLOAT
            nodes.append(helper.make_node("Cast", ["wrap/psi"], [psi], to=to))
        else:
            feed(TRUNCATION_NAME, roles.truncation, None, dtype)
    keep = {_PREFIX + name for name in (roles.latent, roles.class_input, roles.truncation) if name}
    kept_inputs = [item for item in graph.input if item.name not in keep]
    del graph.input[:]
    graph.input.extend(new_inputs + kept_inputs)
    body = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + body)  # the feeds first: the graph stays in topological order
    out = _PREFIX + roles.output
    tail = []
    if roles.layout == "NCHW":
        tail.append(helper.make_node("Transpose", [out], ["wrap/nhwc"], perm=[0, 2, 3, 1]))
        out = "wrap/nhwc"
    if roles.output_dtype != "uint8":
        scale, shift = (128.0, 128.0) if roles.value_range == "-1,1" else (256.0, 0.0)
        for name, value in (("wrap/scale", scale), ("wrap/shift", shift), ("wrap/low", 0.0), ("wrap/high", 255.0)):
            graph.initializer.append(helper.make_tensor(name, proto.FLOAT, [], [value]))
        tail += [
            helper.make_node("Cast", [out], ["wrap/float"], to=proto.FLOAT),
            helper.make_node("Mul", ["wrap/float", "wrap/scale"], ["wrap/scaled"]),
            helper.make_node("Add", ["wrap/scaled", "wrap/shift"], ["wrap/shifted"]),
            helper.make_node("Max", ["wrap/shifted", "wrap/low"], ["wrap/floor"]),
            helper.make_node("Min", ["wrap/floor", "wrap/high"], ["wrap/clipped"]),
            helper.make_node("Cast", ["wrap/clipped"], [OUTPUT_NAME], to=proto.UINT8),
        ]
    else:
        tail.append(helper.make_node("Identity", [out], [OUTPUT_NAME]))
    graph.node.extend(tail)
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(OUTPUT_NAME, proto.UINT8, [batch, roles.height, roles.width, 3]))
    if opset < 8:  # Max/Min with broadcasting
        raise ModelError(f"the graph's opset {opset} is older than 8; export it again with a newer opset")
    return source


def _dtype_of(model: Any, name: str) -> str:
    for item in model.graph.input:
        if item.name == name:
            return "float16" if item.type.tensor_type.elem_type == _onnx().TensorProto.FLOAT16 else "float"
    return "float"
