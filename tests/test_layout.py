"""The package's shape, as a user and a contributor rely on it.

- No import cycles among the package's modules, counting imports at module level and inside
  functions alike (only `if TYPE_CHECKING:` blocks, which never run, are left out), and no
  private name (`_x`) imported from another of its modules: checked over every module, so
  the rule holds for modules added later.
- Nothing at the repository's root shadows the installed package: a regular install runs
  from the root.
- `import ganterp_fast` is light (no torch, onnxruntime or av) and serves the public API.
- A model file that is not a ganterp-fast export, or only part of one, is a one-line exit-2
  error through every command that takes one.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from reliability_helpers import assert_error, run_all

ROOT = Path(__file__).resolve().parents[1]


def _package_folders() -> dict[str, Path]:
    """Package name -> folder, read from pyproject's [tool.setuptools] packages and package-dir."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    roots = setuptools["package-dir"]
    folders = {}
    for package in setuptools["packages"]:
        parent = max((name for name in roots if package == name or package.startswith(name + ".")), key=len)
        folders[package] = ROOT / roots[parent] / Path(*package[len(parent) :].split(".")[1:])
    return folders


PACKAGES = _package_folders()
PUBLIC_API = (
    "analyze",
    "render",
    "prepare",
    "join",
    "Generator",
    "RenderJob",
    "RenderOptions",
    "ModelOptions",
    "AnalysisOptions",
    "PathOptions",
    "Section",
    "EncodeOptions",
    "GanterpError",
    "InputError",
    "MissingExtraError",
    "ModelError",
    "ProviderError",
    "RenderError",
)


def _modules() -> dict[str, Path]:
    modules = {}
    for package, folder in PACKAGES.items():
        for path in sorted(folder.glob("*.py")):
            modules[package if path.stem == "__init__" else f"{package}.{path.stem}"] = path
    return modules


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(inner) for statement in node.body for inner in ast.walk(statement))
    return skipped


def _imports(modules: dict[str, Path]) -> tuple[dict[str, set[str]], list[str]]:
    """Module -> the package modules it imports; and every private name imported across modules."""
    edges: dict[str, set[str]] = {name: set() for name in modules}
    private: list[str] = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        skipped = _type_checking_nodes(tree)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = package.split(".")
                    parts = parts[: len(parts) - node.level + 1]
                    base = ".".join(parts + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                for alias in node.names:
                    if f"{base}.{alias.name}" in modules:  # `from package import module`
                        targets.append(f"{base}.{alias.name}")
                    elif base in modules:
                        targets.append(base)
                        if alias.name.startswith("_") and not alias.name.startswith("__"):
                            private.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {alias.name} from {base}")
            elif isinstance(node, ast.Import):
                targets += [alias.name for alias in node.names if alias.name in modules]
            elif (  # importlib.import_module("ganterp_fast.x") with a literal name
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute | ast.Name)
                and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and node.args[0].value in modules
            ):
                targets.append(node.args[0].value)
            edges[name].update(target for target in targets if target != name)
    return edges, private


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in sorted(edges.get(module, ())):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(edges):
        if module not in index:
            visit(module)
    return found


def test_the_walk_sees_every_package_and_its_imports() -> None:
    modules = _modules()
    for package in PACKAGES:
        assert package in modules, package
    edges, _ = _imports(modules)
    # Relative, absolute and in-function imports all count (engine.generator opens the cache lazily).
    assert "ganterp_fast.engine.errors" in edges["ganterp_fast.engine.backends.onnxruntime_generator"]
    assert "ganterp_fast.engine.cache" in edges["ganterp_fast.engine.backends.onnxruntime_generator"]
    assert "ganterp_fast.export" in edges["ganterp_fast.engine.backends.models"]  # importlib.import_module("...")
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles() -> None:
    edges, _ = _imports(_modules())
    described = [
        " <-> ".join(component)
        + ": "
        + "; ".join(f"{a} -> {b}" for a in component for b in sorted(edges[a]) if b in component)
        for component in _cycles(edges)
    ]
    assert not described, "import cycles (move the shared part into a module both import):\n" + "\n".join(described)


def test_no_private_names_imported_across_modules() -> None:
    _, private = _imports(_modules())
    assert not private, "private names imported from another module (make them public or move them):\n" + "\n".join(
        private
    )


def test_nothing_at_the_root_shadows_the_package() -> None:
    assert not (ROOT / "ganterp_fast").exists(), "a ganterp_fast/ folder at the root hides the installed package"
    for folder in ("engine", "export", "cli", "benchmarks", "tests"):
        assert (ROOT / folder).is_dir(), folder


def test_a_regular_install_runs_from_the_repository_root() -> None:
    python = os.environ.get("GANTERP_RUNTIME_PYTHON")
    if not python:
        pytest.skip("GANTERP_RUNTIME_PYTHON is not set: scripts/test.sh builds a runtime-only environment and sets it")
    where = subprocess.run(
        [python, "-c", "import ganterp_fast.engine as e, ganterp_fast as g; print(g.__file__); print(e.__file__)"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert where.returncode == 0, where.stderr
    for line in where.stdout.split():  # the installed copy, not the source folders (the venv may sit in the root)
        assert "site-packages" in line, where.stdout
        assert not any(Path(line).is_relative_to(ROOT / part) for part in ("src", "engine", "cli")), where.stdout
    usage = subprocess.run(
        [python, "-m", "ganterp_fast", "--help"], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert usage.returncode == 0 and "render" in usage.stdout, usage.stderr


def test_import_is_light_and_serves_the_public_api() -> None:
    code = (
        "import sys, time\n"
        "started = time.perf_counter()\n"
        "import ganterp_fast\n"
        "version = ganterp_fast.__version__\n"
        "print(time.perf_counter() - started)\n"
        "heavy = sorted({'torch', 'onnxruntime', 'av', 'onnx', 'librosa', 'openvino'} & set(sys.modules))\n"
        "print(','.join(heavy))\n"
        f"names = {PUBLIC_API!r}\n"
        "for name in names:\n"
        "    assert getattr(ganterp_fast, name) is not None, name\n"
        "assert set(names) <= set(ganterp_fast.__all__) and set(names) <= set(dir(ganterp_fast))\n"
        "from ganterp_fast.engine.backends.onnxruntime_generator import Generator\n"
        "from ganterp_fast.engine.api import render\n"
        "assert ganterp_fast.render is render and ganterp_fast.Generator is Generator\n"
        "assert 'torch' not in sys.modules\n"
        "print(version)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    seconds, heavy, version = result.stdout.splitlines()
    print(f"import ganterp_fast + __version__: {float(seconds) * 1000:.1f} ms")
    assert heavy == "", f"import ganterp_fast loaded {heavy}"
    assert version and version[0].isdigit()
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        import ganterp_fast

        ganterp_fast.nothing_here  # noqa: B018


# ----------------------------------------------------------------------------------------
# Model files that are not ganterp-fast exports


def _foreign_onnx(path: Path) -> Path:
    """A valid ONNX model (one Identity node) that no ganterp-fast export made."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "foreign",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
    )
    onnx.save(helper.make_model(graph), path)
    return path


@pytest.fixture(scope="module")
def bad_models(tiny_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bad models")
    data = tiny_onnx.read_bytes()
    models = {
        "random bytes": folder / "random.onnx",
        "truncated export": folder / "truncated.onnx",
        "empty file": folder / "empty.onnx",
        "foreign model": _foreign_onnx(folder / "foreign.onnx"),
    }
    models["random bytes"].write_bytes(os.urandom(4096))
    models["truncated export"].write_bytes(data[: len(data) // 2])
    models["empty file"].write_bytes(b"")
    return models


def test_a_broken_or_foreign_model_is_one_line_exit_2(
    bad_models: dict[str, Path],
    song: Path,
    tmp_path: Path,
) -> None:
    commands: dict[tuple[str, str], list[object]] = {}
    for kind, model in bad_models.items():
        out = tmp_path / f"{kind}.mp4"
        commands[kind, "render"] = ["render", song, "-o", out, "--model", model, "-q", "--device", "cpu"]
        commands[kind, "bench"] = ["bench", model, "--device", "cpu", "--seconds", "0.1", "--no-peak", "-q"]
    results = run_all(commands)
    for (kind, command), result in results.items():
        model = bad_models[kind]
        line = assert_error(result, 2, model.name, "ganterp-fast export", command=command)
        expected = "a generator needs" if kind in ("foreign model", "empty file") else "not an ONNX model"
        assert expected in line, (kind, line)
    assert os.listdir(tmp_path) == []
