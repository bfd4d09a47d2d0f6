"""The baseline servers' own code, each started by the harness as a uvicorn subprocess."""
