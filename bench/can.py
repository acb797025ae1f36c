"""Benchmark: the five algorithms on the same suboptimal Can demos. See bench/lift.py.

    python bench/can.py --data runs/data/can_suboptimal --out bench/results/can.json
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_spec = importlib.util.spec_from_file_location("bench_lift", Path(__file__).with_name("lift.py"))
_lift = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_lift)

if __name__ == "__main__":
    sys.exit(_lift.main(task="can"))
