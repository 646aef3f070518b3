"""Performance benchmarks. ``python -m bench.studies.perf.trl_compare``: our trainer vs TRL 1.16 on the CPU.

- ``pairs``: what each pair runs on both sides (OPD vs DistillationTrainer, GRPO vs GRPOTrainer, SFT vs SFTTrainer).
- ``prepare``: what both sides read from disk (world models, SFT's teacher samples), built before timing.
- ``ours`` / ``trl_side``: run one side once and return a measurement (``measure``'s schema).
- ``trl_settings`` / ``trl_timing``: TRL's configs, and how its step times and phases are recorded.
- ``stats`` / ``report``: paired ratios over repeats, and the JSON / markdown report.
- ``deps``: the clear error when the benchmark-only extra (``.[bench]``) is missing.
"""
