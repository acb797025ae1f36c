"""robolearn: learn manipulation policies from messy demonstrations (IRIS and baselines),
and run them through one hardware abstraction layer on simulated and real arms."""
__version__ = "0.1.0"
