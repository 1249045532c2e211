"""The sandbox and the launcher only meet over HTTP: neither imports the other."""

import ast
from pathlib import Path

import launcher

LAUNCHER_ROOT = Path(launcher.__file__).parent
SANDBOX_ROOT = LAUNCHER_ROOT / "sandbox"
# The only places allowed to *name* the sandbox: configuration, by dotted string.
CONFIGURATION_FILES = {LAUNCHER_ROOT / "settings.py", LAUNCHER_ROOT / "urls.py"}


def _module_name(path: Path) -> str:
    relative = path.relative_to(LAUNCHER_ROOT.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported_modules(path: Path, module_name: str | None = None) -> list[str]:
    """Every module an import statement in `path` names, relative imports resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = (module_name or _module_name(path)).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            names.append(module)
            names.extend(f"{module}.{alias.name}" for alias in node.names)
    return names


def _python_files(root: Path):
    return [path for path in root.rglob("*.py") if "__pycache__" not in path.parts]


def _is_sandbox(module: str) -> bool:
    return module == "launcher.sandbox" or module.startswith("launcher.sandbox.")


def test_the_sandbox_imports_nothing_from_the_launcher():
    offenders = [
        f"{path.relative_to(LAUNCHER_ROOT.parent)} imports {module}"
        for path in _python_files(SANDBOX_ROOT)
        for module in _imported_modules(path)
        if (module == "launcher" or module.startswith("launcher.")) and not _is_sandbox(module)
    ]
    assert offenders == []


def test_the_launcher_never_imports_the_sandbox():
    launcher_files = [
        path for path in _python_files(LAUNCHER_ROOT) if SANDBOX_ROOT not in path.parents
    ]
    offenders = [
        f"{path.relative_to(LAUNCHER_ROOT.parent)} imports {module}"
        for path in launcher_files
        for module in _imported_modules(path)
        if _is_sandbox(module)
    ]
    assert offenders == []


def test_the_launcher_names_the_sandbox_only_in_its_configuration():
    """No `import_module("launcher.sandbox...")` tricks around the import scan."""
    offenders = [
        str(path.relative_to(LAUNCHER_ROOT.parent))
        for path in _python_files(LAUNCHER_ROOT)
        if SANDBOX_ROOT not in path.parents
        and path not in CONFIGURATION_FILES
        and "launcher.sandbox" in path.read_text()
    ]
    assert offenders == []


def test_the_scan_sees_relative_imports(tmp_path):
    """The checker itself: a relative import out of the sandbox is resolved and caught."""
    probe = tmp_path / "probe.py"
    probe.write_text("from .. import models\nfrom ..cyberdesk import client\n")

    modules = _imported_modules(probe, "launcher.sandbox.probe")
    assert "launcher.models" in modules
    assert "launcher.cyberdesk.client" in modules
