"""No floating point anywhere in the execution engine (DESIGN.md section 6).

Scans every module of sequencer_net/execution with `ast` for float literals,
`float(...)` calls, true division `/` (and `/=`), and imports of math, decimal,
fractions, cmath or statistics. Integer fixed point only: every division in a
state transition is `//` with a stated rounding direction.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import sequencer_net.execution as execution

PACKAGE = Path(execution.__file__).parent
FORBIDDEN_MODULES = {"math", "cmath", "decimal", "fractions", "statistics"}
# Integer-exact functions of `math` (int in, int out, no float on any path).
# fixed_point.py uses isqrt for its square root. Nothing else from math passes.
INTEGER_EXACT_MATH = {"isqrt"}
MODULES = sorted(PACKAGE.glob("*.py"))


def float_uses(source: str) -> list[str]:
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Constant) and isinstance(node.value, (float, complex)):
            found.append(f"line {line}: float literal {node.value!r}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id in ("float", "complex"):
                found.append(f"line {line}: {node.func.id}() call")
        elif isinstance(node, (ast.BinOp, ast.AugAssign)) and isinstance(node.op, ast.Div):
            found.append(f"line {line}: true division")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in FORBIDDEN_MODULES:
                    found.append(f"line {line}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = {alias.name for alias in node.names}
            integer_only = node.module == "math" and names <= INTEGER_EXACT_MATH
            if node.module.split(".")[0] in FORBIDDEN_MODULES and not integer_only:
                found.append(f"line {line}: from {node.module} import {sorted(names)}")
    return found


def test_the_scanner_catches_each_kind_of_float_use() -> None:
    source = "import math\nfrom decimal import Decimal\nx = 1.5\ny = float(2)\nz = 3 / 4\nz /= 2\n"
    assert len(float_uses(source)) == 6
    assert float_uses("a = 7 // 2\nb = -(-a // 3)\nfrom math import isqrt\n") == []
    assert float_uses("from math import isqrt, sqrt\n") != []


def test_execution_package_has_modules_to_scan() -> None:
    names = {path.name for path in MODULES}
    assert {"engine.py", "margin.py", "funding.py", "matching.py"} <= names


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_module_uses_no_float(path: Path) -> None:
    assert float_uses(path.read_text()) == [], path.name
