"""The runtime: what runs a policy (or a scripted operator) through episodes.

- ``seeds``: the per-episode seeding rule every job follows, so a result depends on the run's
  ``--seed`` and the episode's index only, never on how episodes are spread over processes;
- ``rollout``: the one episode loop evaluation and collection both use;
- ``workers``: the one process pool that runs episodes, carrying workers' errors to the parent.

Acting itself stays with ``robolearn.policy.Policy`` (and the planning interface of the
hierarchical algorithms); the fixed-rate loop for real arms is ``robolearn.hal.loop.ControlLoop``,
which starts episodes the same way (``rollout.start_episode``).
"""
