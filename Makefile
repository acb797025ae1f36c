# Two entry points that work on a fresh machine: `make quickstart` and `make test`.
# Both create .venv when it is missing and install what they need; the stamp file
# makes the second run skip the installs unless pyproject.toml changed.
PY      ?= python3
VENV    := .venv
VPY     := $(VENV)/bin/python
STAMP   := $(VENV)/.robolearn-installed
export MUJOCO_GL ?= osmesa
export PYOPENGL_PLATFORM ?= osmesa

.PHONY: setup quickstart test bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(VPY) || $(PY) -m venv $(VENV)
	@$(VPY) -m pip install -q --upgrade pip
	@# The pinned torch comes first: it is the local CPU build. Unpinned, pip pulls a CUDA build of several GB.
	@$(VPY) -m pip install -q torch==2.13.0
	@$(VPY) -m pip install -q -e '.[sim,lerobot,dev]'
	@# Offscreen MuJoCo rendering (videos) needs OSMesa; install Debian's package when it is missing.
	@if ! ldconfig -p 2>/dev/null | grep -q libOSMesa; then \
	  (command -v apt-get >/dev/null && (apt-get update -qq && apt-get install -y -qq libosmesa6 >/dev/null) ) \
	  || echo "warning: libosmesa6 missing and could not be installed; videos will be skipped"; fi
	@touch $(STAMP)

# Suboptimal Lift in MuJoCo, about 10 minutes on 2 cores; `make quickstart QUICKSTART_TASK=graph_reach`
# runs the fast teaching task instead. Everything lands under runs/quickstart/<task>/.
QUICKSTART_TASK ?= lift
quickstart: setup
	$(VPY) -m robolearn.quickstart --task $(QUICKSTART_TASK)

test: setup
	$(VPY) -m pytest -q tests

# The Graph Reach headline table: every algorithm on the evaluation draws of bench/draws.yaml
# (3 draws x 3 seeds, 50 episodes on each of the last 5 checkpoints); resumable, hours on 2 cores.
bench: setup
	$(VPY) bench/protocol.py graph_reach --workers 2 --json bench/results/protocol_graph_reach.json

clean:
	rm -rf runs $(VENV)
