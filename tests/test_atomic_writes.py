"""Every file pcam_core writes goes through atomic_output (a temp name, then a rename), so a
killed job never leaves a half-written file under a finished name.

An AST scan of pcam_core for the calls that write files. A write passes when it is inside a
``with atomic_path(...)`` / ``with atomic_directory(...)`` block, or writes to an in-memory
buffer, or its target is a parameter of a helper that the module only calls inside such
blocks; the few writers that are not outputs (an append-only log, a lock file) are listed
below with the reason.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "pcam_core"
ATOMIC = {"atomic_path", "atomic_directory"}
# attribute calls that write the file named by their first argument (or, for the Path
# methods write_text / write_bytes, by their receiver)
WRITE_METHODS = {"save", "savez", "savez_compressed", "savefig", "imwrite", "to_csv", "tofile",
                 "write_text", "write_bytes", "copy", "copy2", "copyfile", "copytree", "move"}
DUMPERS = {"json", "pickle", "yaml"}  # json.dump(obj, file) writes an open file: checked at its open()
READ_MODES = {"r", "rb", "rt"}

# (module, function) -> why its direct write is not an output needing a temp name.
ALLOWED = {
    ("common/training_loop.py", "TrainingLog.write"): "append-only JSON-lines training log",
    ("common/gpu_lock.py", "_try_lock"): "a lock file, not an output",
    ("common/shard_store.py", "ShardStoreWriter.__enter__"): "opens the temp file of an atomic_path "
                                                             "entered by hand (closed in __exit__)",
    ("data/download.py", "_fetch_into"): "the resumable .part file; renamed only once verified",
    ("data/index_builder.py", "main"): "DatasetIndex.save, which writes through write_text",
}


def _name(func: ast.expr) -> str | None:
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None


def _mode(call: ast.Call, position: int) -> str | None:
    """The mode argument when it is a constant; '?' when it is computed; None when absent."""
    node = call.args[position] if len(call.args) > position else None
    node = next((k.value for k in call.keywords if k.arg == "mode"), node)
    if node is None:
        return None
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else "?"


def _target(call: ast.Call) -> ast.expr | None:
    """The expression naming the file a write call writes."""
    if isinstance(call.func, ast.Attribute) and call.func.attr in ("write_text", "write_bytes"):
        return call.func.value
    return call.args[0] if call.args else None


def _is_write(call: ast.Call) -> bool:
    name = _name(call.func)
    if name == "open" and isinstance(call.func, ast.Name):  # open(path, mode)
        mode = _mode(call, 1)
        return mode is not None and mode not in READ_MODES
    if name == "open":  # Path.open(mode); other .open()s (Image.open, h5py.h5o.open) read
        mode = _mode(call, 0)
        return mode is not None and mode != "?" and any(c in mode for c in "wax+")
    if name == "File":  # h5py.File(path, mode); default "r"
        mode = _mode(call, 1)
        return mode is not None and mode != "r"
    if name == "dump":
        return isinstance(call.func, ast.Attribute) and _name(call.func.value) in DUMPERS and len(call.args) > 1 \
            and not isinstance(call.args[1], ast.Name)  # a dump into an open file: its open() is checked
    if name in WRITE_METHODS and isinstance(call.func, ast.Attribute):
        target = _target(call)
        # a dict, list or call result first argument is a state, not a path (Checkpointer.save(state))
        return target is not None and not isinstance(target, (ast.Dict, ast.List, ast.Tuple))
    return False


def _root(node: ast.expr) -> str | None:
    """The variable a path expression starts from: ``tmp`` of ``tmp / "a" / name``."""
    while True:
        if isinstance(node, ast.Name):
            return node.id
        if isinstance(node, ast.BinOp):
            node = node.left
        elif isinstance(node, (ast.Attribute, ast.Subscript)):
            node = node.value
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("Path", "str") \
                and node.args:
            node = node.args[0]
        else:
            return None


class _Scan(ast.NodeVisitor):
    """Unguarded writes per function, calls of module functions and whether each was guarded."""

    def __init__(self):
        self.scope: list[str] = []
        self.functions: list[ast.FunctionDef] = []
        self.guarded = 0
        self.writes: list[tuple[str, ast.Call, str | None]] = []  # (function, call, parameter written)
        self.calls: dict[str, list[bool]] = {}  # function name -> guarded?, per call site

    def visit_ClassDef(self, node):
        self.scope.append(node.name)
        self.generic_visit(node)
        self.scope.pop()

    def visit_FunctionDef(self, node):
        self.scope.append(node.name)
        self.functions.append(node)
        guarded, self.guarded = self.guarded, 0
        self.generic_visit(node)
        self.guarded = guarded
        self.functions.pop()
        self.scope.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_With(self, node):
        atomic = any(isinstance(item.context_expr, ast.Call) and _name(item.context_expr.func) in ATOMIC
                     for item in node.items)
        for item in node.items:
            self.visit(item)
        self.guarded += atomic
        for statement in node.body:
            self.visit(statement)
        self.guarded -= atomic

    def visit_Call(self, node):
        if isinstance(node.func, ast.Name):
            self.calls.setdefault(node.func.id, []).append(bool(self.guarded))
        if _is_write(node) and not self.guarded and not self._to_buffer(node):
            self.writes.append((".".join(self.scope), node, self._parameter(node)))
        self.generic_visit(node)

    def _to_buffer(self, call: ast.Call) -> bool:
        """A write into an io.BytesIO / StringIO made in the same function."""
        root = _root(_target(call)) if _target(call) is not None else None
        if root is None or not self.functions:
            return False
        for node in ast.walk(self.functions[-1]):
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == root for t in node.targets) \
                    and isinstance(node.value, ast.Call) and _name(node.value.func) in ("BytesIO", "StringIO"):
                return True
        return False

    def _parameter(self, call: ast.Call) -> str | None:
        """The enclosing function's parameter the write's target starts from, if any, through
        local assignments (``target = folder / name``)."""
        root = _root(_target(call)) if _target(call) is not None else None
        if root is None or not self.functions:
            return None
        function = self.functions[-1]
        args = function.args
        names = {a.arg for a in args.posonlyargs + args.args + args.kwonlyargs}
        assigned = {node.targets[0].id: node.value for node in ast.walk(function)
                    if isinstance(node, ast.Assign) and len(node.targets) == 1
                    and isinstance(node.targets[0], ast.Name)}
        for _ in range(5):
            if root in names:
                return root
            if root not in assigned:
                return None
            root = _root(assigned.pop(root))
        return None


def unguarded_writes() -> list[str]:
    """'module:line function: call' for every write outside atomic_output and the allow-list."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = path.relative_to(PACKAGE).as_posix()
        scan = _Scan()
        scan.visit(ast.parse(path.read_text(encoding="utf-8"), str(path)))
        for function, call, parameter in scan.writes:
            if (module, function) in ALLOWED:
                continue
            helper = function.rsplit(".", 1)[-1]
            sites = scan.calls.get(helper, [])
            if parameter is not None and sites and all(sites):
                continue  # a helper writing where its callers, all inside atomic blocks, point it
            found.append(f"pcam_core/{module}:{call.lineno} {function}: {ast.unparse(call)[:90]}")
    return found


def test_every_write_goes_through_atomic_output():
    writes = unguarded_writes()
    assert not writes, ("these calls write a file directly; write under `with atomic_path(out) as tmp` "
                        "(or atomic_directory / atomic_output.write_text), or, for a file that is not an "
                        "output, add it to ALLOWED with the reason:\n" + "\n".join(writes))


def test_the_scan_sees_direct_writes(tmp_path, monkeypatch):
    """The scan itself: direct writes are found, guarded ones and buffers are not."""
    package = tmp_path / "pcam_core"
    package.mkdir()
    (package / "bad.py").write_text(
        "import io, json, torch\n"
        "from pcam_core.common.atomic_output import atomic_path\n"
        "def direct(out, model):\n"
        "    torch.save(model, out)\n"
        "    with open(out, 'w') as f:\n"
        "        json.dump({}, f)\n"
        "    out.with_suffix('.md').write_text('x')\n"
        "def fine(out, model, image):\n"
        "    with atomic_path(out) as tmp:\n"
        "        torch.save(model, tmp)\n"
        "    buffer = io.BytesIO()\n"
        "    image.save(buffer, format='PNG')\n"
        "    with open(out) as f:\n"
        "        return f.read()\n"
        "def _helper(path):\n"
        "    path.write_text('x')\n"
        "def caller(out):\n"
        "    with atomic_path(out) as tmp:\n"
        "        _helper(tmp)\n"
        "def _unguarded_helper(path):\n"
        "    path.write_text('x')\n"
        "def careless(out):\n"
        "    _unguarded_helper(out)\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", package)
    found = unguarded_writes()
    assert [line.split(" ")[0] for line in found] == ["pcam_core/bad.py:4", "pcam_core/bad.py:5",
                                                      "pcam_core/bad.py:7", "pcam_core/bad.py:21"]
