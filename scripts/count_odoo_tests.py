#!/usr/bin/env python3
"""Count the Odoo suite's tests without Odoo: methods named ``test*`` in the classes of ``test_*.py`` files.

Usage: count_odoo_tests.py [TESTS_DIR]   (default: the tests of epilot_outlook and its bridges,
epilot_outlook_*/tests). Prints one number.
A test inherited by several classes is counted once; Odoo may run it more often.
"""
import ast
import pathlib
import sys


def count(tests_dir: pathlib.Path) -> int:
    total = 0
    for path in sorted(tests_dir.rglob("test_*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                total += sum(isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))
                             and item.name.startswith("test") for item in node.body)
    return total


if __name__ == "__main__":
    root = pathlib.Path(__file__).resolve().parent.parent
    dirs = [pathlib.Path(sys.argv[1])] if len(sys.argv) > 1 else sorted(root.glob("epilot_outlook*/tests"))
    print(sum(count(tests_dir) for tests_dir in dirs))
