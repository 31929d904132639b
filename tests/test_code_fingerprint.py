"""The stage code fingerprint comes from the import closure read from the source."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pcam_core.cli import COMMANDS
from pcam_core.common import code_fingerprint as cf

REPO = Path(__file__).resolve().parents[1]


def _package(root: Path, files: dict[str, str]) -> Path:
    """A throwaway ``pcam_core`` tree: {relative path: source}."""
    package = root / "pcam_core"
    for relative, source in files.items():
        path = package / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    cf.direct_imports.cache_clear()
    return package


@pytest.fixture
def tree(tmp_path):
    return _package(tmp_path, {
        "__init__.py": "",
        "cli.py": "import importlib\n",
        "stage/__init__.py": "",
        "stage/command.py": "from pcam_core.stage import helper\nfrom .sibling import thing\n",
        "stage/helper.py": "def f():\n    from pcam_core.common.deep import g  # a lazy import counts\n",
        "stage/sibling.py": "thing = 1\n",
        "common/__init__.py": "",
        "common/deep.py": "import pcam_core.common.deeper as d\n",
        "common/deeper.py": "import numpy\n",
        "common/unused.py": "",
        "other/__init__.py": "from pcam_core.common import unused\n",
    })


def test_closure_follows_indirect_lazy_and_relative_imports(tree):
    closure = cf.import_closure("pcam_core.stage.command", root=tree)
    assert closure == ["pcam_core", "pcam_core.common", "pcam_core.common.deep", "pcam_core.common.deeper",
                       "pcam_core.stage", "pcam_core.stage.command", "pcam_core.stage.helper",
                       "pcam_core.stage.sibling"]
    assert "pcam_core.common.unused" not in closure  # only `other` imports it


def test_fingerprint_changes_with_any_file_of_the_closure_and_no_other(tree):
    def current():
        cf._file_digest.cache_clear()
        return cf.fingerprint(cf.import_closure("pcam_core.stage.command", root=tree), root=tree)

    before = current()
    (tree / "common" / "unused.py").write_text("# edited\n")
    assert current() == before
    (tree / "common" / "deeper.py").write_text("import numpy  # edited two imports away\n")
    assert current() != before


def test_missing_module_is_named(tree):
    with pytest.raises(ModuleNotFoundError, match="pcam_core.nowhere"):
        cf.direct_imports("pcam_core.nowhere", root=tree)


def test_every_command_closure_holds_the_dispatcher_and_its_module():
    for command, (module, _) in COMMANDS.items():
        modules = cf.command_modules(command)
        assert "pcam_core.cli" in modules and module in modules
    with pytest.raises(KeyError, match="no command"):
        cf.command_modules("not-a-command")


def test_the_real_closure_finds_the_chain_a_hand_kept_list_missed():
    """build-index reaches click_formats only through custom_dataset."""
    assert "pcam_core.data.click_formats" not in cf.direct_imports("pcam_core.data.index_builder")
    assert "pcam_core.data.click_formats" in cf.command_modules("build-index")
    assert "pcam_core.data.click_formats" not in cf.command_modules("make-demo")


def _rule_blocks():
    for path in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        for block in re.split(r"(?m)^(?=rule )", path.read_text())[1:]:
            yield path, block


def test_every_rule_fingerprints_the_command_it_runs():
    """A rule's code= names the same `pcam <command>` its shell runs."""
    checked = 0
    for path, block in _rule_blocks():
        name = block.split(":", 1)[0].split()[1]
        fingerprinted = re.findall(r'code_fingerprint\("([a-z-]+)"\)', block)
        runs = re.findall(r'"pcam ([a-z-]+)', block)
        if fingerprinted:
            assert fingerprinted == runs[:1], f"{path.name}: rule {name} fingerprints {fingerprinted}, runs {runs}"
            checked += 1
    assert checked >= 20
