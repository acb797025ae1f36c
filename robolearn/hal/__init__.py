"""Hardware abstraction layer: one Arm interface for simulated and real arms, with the
SafetyShield and ControlLoop that stand between every command source and every arm."""
from robolearn.hal.arm import Arm, ArmError, ArmSpec, Observation  # noqa: F401
