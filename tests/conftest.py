"""Odoo-free suite: make the plain layer importable as ``outlook_core`` without importing Odoo."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "epilot_outlook"))
sys.path.insert(0, ROOT)
