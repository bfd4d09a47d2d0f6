"""What tests and benchmarks share, kept out of the ``asr_serve`` wheel: a tiny checkpoint,
synthetic speech, text metrics, a long recording, long audio in process. Run from the
repository's root (``python -m devtools.tiny_model OUT_DIR``), like ``tests`` and
``benchmarks``."""
