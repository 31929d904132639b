"""A stage's code fingerprint, computed from the code itself.

Snakemake reruns a job when its params change, but it does not see the Python a rule's
command imports. So each stage rule passes the hash of every pcam_core source file its
command can execute: ``pcam_core/cli.py`` (the dispatcher) plus the import closure of the
command's module, read from the source with ``ast``. No list is kept by hand, so a new
import can never be missed.

The closure over-approximates on purpose: every ``import`` in a file counts, also those
inside functions or ``if TYPE_CHECKING`` blocks, and importing ``pcam_core.a.b`` counts the
package ``__init__`` files it runs. An edit there reruns a stage that might not need it;
an edit that a stage does run always reruns it. Only static imports are followed: the CLI's
``importlib.import_module`` of the command module is the one dynamic import, and it is the
closure's root.
"""

from __future__ import annotations

import ast
import hashlib
from functools import lru_cache
from pathlib import Path

PACKAGE = "pcam_core"
PACKAGE_DIR = Path(__file__).resolve().parents[1]
DISPATCHER = f"{PACKAGE}.cli"


def module_file(module: str, root: Path = PACKAGE_DIR) -> Path | None:
    """The source file of a dotted pcam_core module or package; None if there is none."""
    parts = module.split(".")[1:]
    base = root.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str | None:
    """The absolute module an ``import from`` names (resolving ``from . import x``)."""
    if not node.level:
        return node.module
    package = module.split(".") if is_package else module.split(".")[:-1]
    if node.level > 1:
        package = package[: len(package) - (node.level - 1)]
    return ".".join(package + ([node.module] if node.module else []))


@lru_cache(maxsize=None)
def direct_imports(module: str, root: Path = PACKAGE_DIR) -> frozenset[str]:
    """The pcam_core modules one module's source imports anywhere in the file (read once
    per process: the Snakefile asks for every rule)."""
    path = module_file(module, root)
    if path is None:
        raise ModuleNotFoundError(f"{module}: no source file under {root}")
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, module, path.name == "__init__.py")
            if not base:
                continue
            # `from pcam_core.cam import net` imports a module; `from pcam_core.cam.net
            # import CamNet` a name of one. Both depend on the base module.
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name == PACKAGE or name.startswith(PACKAGE + "."):
                if module_file(name, root) is not None:
                    found.add(name)
    return frozenset(found)


def _with_parents(module: str) -> list[str]:
    """A module and the packages whose ``__init__`` importing it runs."""
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def import_closure(module: str, root: Path = PACKAGE_DIR) -> list[str]:
    """Every pcam_core module that importing ``module`` can execute, sorted."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        current = todo.pop()
        for name in _with_parents(current):
            if name not in seen and module_file(name, root) is not None:
                seen.add(name)
                todo.extend(direct_imports(name, root))
    return sorted(seen)


@lru_cache(maxsize=None)
def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fingerprint(modules, root: Path = PACKAGE_DIR) -> str:
    """SHA-256 (12 hex) over the names and contents of the given modules' files."""
    digest = hashlib.sha256()
    for module in sorted(set(modules)):
        path = module_file(module, root)
        digest.update(f"{module}\0{_file_digest(path) if path else '<missing>'}\n".encode())
    return digest.hexdigest()[:12]


def command_modules(command: str) -> list[str]:
    """The modules ``pcam <command>`` runs: the dispatcher and its module's closure."""
    from pcam_core.cli import COMMANDS

    if command not in COMMANDS:
        raise KeyError(f"pcam has no command {command!r}; known: {', '.join(sorted(COMMANDS))}")
    return sorted(set(import_closure(DISPATCHER)) | set(import_closure(COMMANDS[command][0])))


def command_fingerprint(command: str) -> str:
    """The code fingerprint of the stage whose rule runs ``pcam <command>``."""
    return fingerprint(command_modules(command))
