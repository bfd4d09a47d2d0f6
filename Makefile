# Two commands for a fresh machine (Debian/Ubuntu with Python 3.11+):
#   make serve   install, then serve the embedded Whisper tiny.en on CPU at http://127.0.0.1:8000
#   make test    install, then run the whole test suite (what CI runs)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: serve test system-deps build-deps install lint

# pip builds webrtcvad (required by resemblyzer, whose wheel has the speaker encoder's
# weights) from source: it needs a C compiler and this Python's headers.
HAS_HEADERS := import os, sys, sysconfig; sys.exit(not os.path.isfile(os.path.join(sysconfig.get_paths()["include"], "Python.h")))
build-deps:
	@if ! command -v gcc >/dev/null || ! $(PYTHON) -c '$(HAS_HEADERS)'; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq gcc python3-dev; fi

system-deps:
	@if ! command -v espeak-ng >/dev/null || ! command -v ffmpeg >/dev/null \
	  || ! command -v redis-server >/dev/null || ! command -v chromium >/dev/null; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq \
	  && $$SUDO apt-get install -y -qq espeak-ng ffmpeg redis-server chromium; fi

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

install: build-deps $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'

serve: install
	@echo "Starting asr-serve; once it logs 'loaded and warmed up' (then /ready answers 200), try:"
	@echo "  curl -s http://127.0.0.1:8000/v1/audio/transcriptions -F file=@your-recording.mp3"
	$(BIN)/serve run serve_config.cpu.yaml

lint: install
	$(BIN)/ruff check asr_serve devtools tests benchmarks cluster
	$(BIN)/ruff format --check asr_serve devtools tests benchmarks cluster

test: system-deps install lint
	$(BIN)/python -m pytest -ra
