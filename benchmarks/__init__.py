"""Side-by-side benchmarks of asr-serve against its baselines: ``python -m benchmarks.run``."""
