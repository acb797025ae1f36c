"""The runtime: what runs a policy (or a scripted operator) through episodes.

- ``seeds``: the one per-episode seeding rule every job follows (``SeedSequence`` over the run's
  ``--seed``, the stream the episodes are for and the episode's index), so a result never depends
  on how episodes are spread over processes;
- ``episode``: the one step body (observe, act, send, record, the end rules) that simulated
  rollouts and the HAL's fixed-rate ``ControlLoop`` both run;
- ``rollout``: episodes of a simulated task, the ones evaluation and collection record;
- ``workers``: the one process pool that runs jobs, carrying workers' errors to the parent;
  ``ray_pool`` its Ray backend (actors on a cluster, the same jobs and order), ``worker_state``
  what both kinds of worker do with the state they build.

Acting itself stays with ``robolearn.policy.Policy`` (and the planning interface of the
hierarchical algorithms); pacing against the clock and the arm as the plant stay with
``robolearn.hal.loop``.
"""
