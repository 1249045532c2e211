"""Only launcher/cyberdesk/ speaks HTTP (the sandbox, a separate app, may deliver webhooks)."""

import ast
from pathlib import Path

import launcher

LAUNCHER_DIR = Path(launcher.__file__).parent
ALLOWED = {LAUNCHER_DIR / "cyberdesk", LAUNCHER_DIR / "sandbox"}


def imports_httpx(source: str) -> bool:
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            modules = [node.module or ""]
        else:
            continue
        if any(module.split(".")[0] == "httpx" for module in modules):
            return True
    return False


def test_no_module_outside_the_client_imports_httpx():
    offenders = [
        str(path.relative_to(LAUNCHER_DIR.parent))
        for path in LAUNCHER_DIR.rglob("*.py")
        if not any(path.is_relative_to(allowed) for allowed in ALLOWED)
        and imports_httpx(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []


def test_the_check_recognises_every_import_form():
    assert imports_httpx("import httpx")
    assert imports_httpx("import os, httpx as h")
    assert imports_httpx("from httpx import Client")
    assert imports_httpx("def f():\n    from httpx._client import Client")
    assert not imports_httpx("import httpx_sse_lookalike\nfrom launcher import cyberdesk")


def test_the_walk_covers_the_packages_that_would_be_tempted():
    walked = {path.relative_to(LAUNCHER_DIR).parts[0] for path in LAUNCHER_DIR.rglob("*.py")}
    assert {"views", "services"} <= walked
