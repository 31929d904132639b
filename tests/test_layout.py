"""The code layout mirrors the DAG: each rule file has its code package beside it."""

from __future__ import annotations

import re
from pathlib import Path

from pcam_core.cli import COMMANDS
from pcam_core.common import code_fingerprint as cf

REPO = Path(__file__).resolve().parents[1]
RULES = REPO / "workflow" / "rules"
PACKAGE = REPO / "pcam_core"


def test_each_rule_file_has_its_package_and_runs_only_its_code():
    """workflow/rules/<stage>.smk runs `pcam` commands whose modules live in pcam_core/<stage>/;
    common.smk holds no rule (its package is the shared mechanics)."""
    for smk in sorted(RULES.glob("*.smk")):
        stage = smk.stem
        assert (PACKAGE / stage / "__init__.py").is_file(), f"{smk.name} has no package pcam_core/{stage}/"
        for command in re.findall(r'"pcam ([a-z-]+)', smk.read_text()):
            module = COMMANDS[command][0]
            assert module.startswith(f"pcam_core.{stage}."), f"{smk.name} runs {command} from {module}"


def test_every_module_lives_in_a_stage_package():
    loose = sorted(p.name for p in PACKAGE.glob("*.py") if p.name not in ("__init__.py", "cli.py"))
    assert loose == [], f"modules outside a stage package: {loose}"
    stages = {p.stem for p in RULES.glob("*.smk")}
    packages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert packages == stages, f"packages {sorted(packages - stages)} have no rule file"


def test_no_import_cycles():
    modules = ["pcam_core." + ".".join(p.relative_to(PACKAGE).with_suffix("").parts).removesuffix(".__init__")
               for p in PACKAGE.rglob("*.py")]
    modules = [m.removesuffix(".__init__") for m in modules]
    state: dict[str, int] = {}

    def visit(module, path):
        state[module] = 1
        for imported in cf.direct_imports(module):
            # importing a submodule of one's own package is not a cycle with the package
            if module == imported or module.startswith(imported + "."):
                continue
            assert state.get(imported) != 1, "import cycle: " + " -> ".join(path + [imported])
            if imported not in state:
                visit(imported, path + [imported])
        state[module] = 2

    for module in modules:
        if module not in state:
            visit(module, [module])
