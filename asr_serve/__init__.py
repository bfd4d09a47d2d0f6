"""asr-serve: speech recognition for the FunASR model family, served with Ray Serve."""

__version__ = "0.1.0"
