"""Task definitions: reset distribution, success test, reward and scripted operators."""
from robolearn.tasks.base import StepResult, TaskEnv, make_env, make_operator, register_env, register_operator  # noqa: F401
