"""Audio input: uploads decoded to 16 kHz mono float32 (PyAV), long audio split at pauses."""
