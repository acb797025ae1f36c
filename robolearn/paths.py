"""Where the declarative YAML lives. The package is installed editable from the repository,
so the repository's envs/, controllers/ and launch/ folders sit beside it."""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(os.environ.get("ROBOLEARN_ROOT", Path(__file__).resolve().parents[1]))
ENVS_DIR = REPO_ROOT / "envs"
CONTROLLERS_DIR = REPO_ROOT / "controllers"
LAUNCH_DIR = REPO_ROOT / "launch"
DATASETS_DIR = REPO_ROOT / "datasets"
