"""`mammo-keras dashboard`: check the options, then serve the app with `streamlit run`."""

from __future__ import annotations

import importlib.util
import math
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from mammo_keras.errors import UserError
from mammo_keras.dashboard.settings import DashboardSettings

APP = Path(__file__).with_name("app.py")


def check_settings(settings: DashboardSettings) -> None:
    """Raise ValueError / FileNotFoundError (one line) for options the app could not use."""
    if importlib.util.find_spec("streamlit") is None:
        raise UserError("the dashboard needs Streamlit: pip install 'mammo-keras[dashboard]'")
    if settings.model is not None and not settings.model.exists():
        raise FileNotFoundError(f"{settings.model}: model not found")
    if settings.results is not None and not (settings.results / "predictions.csv").is_file():
        raise FileNotFoundError(f"{settings.results}: not an evaluated run folder (no "
                                "predictions.csv; 'mammo-keras evaluate MODEL --out DIR' writes one)")
    if not settings.max_upload_mb > 0:
        raise UserError(f"--max-upload-mb must be positive, got {settings.max_upload_mb}")


def streamlit_command(port: int, address: str, max_upload_mb: float) -> list[str]:
    """The `streamlit run` command line of the app: headless, no usage statistics, Streamlit's
    upload limit at least ours (ours gives the clearer message), error details hidden."""
    return [sys.executable, "-m", "streamlit", "run", str(APP),
            f"--server.port={port}", f"--server.address={address}", "--server.headless=true",
            f"--server.maxUploadSize={max(1, math.ceil(max_upload_mb))}",
            "--browser.gatherUsageStats=false", "--client.showErrorDetails=false",
            "--client.toolbarMode=minimal", "--theme.base=light"]


# Signals a user (or a process manager: systemd, Kubernetes, `kill PID`) stops the server with.
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def serve(settings: DashboardSettings, port: int = 8501, address: str = "localhost") -> int:
    """Serve the dashboard until stopped; returns Streamlit's exit status (0 when stopped).

    Streamlit runs as a child process; SIGTERM, SIGINT and SIGHUP sent to this process are
    passed on to it, so stopping the launcher stops the server (no orphan holding the
    port), and the launcher waits for it to finish.
    """
    check_settings(settings)
    print(f"mammo-keras dashboard: serving on http://{address}:{port} (Ctrl-C stops it)",
          flush=True)
    environment = {**os.environ, **settings.environment()}
    server = subprocess.Popen(streamlit_command(port, address, settings.max_upload_mb),
                              env=environment)
    stopped = []

    def forward(number, _frame) -> None:
        stopped.append(number)
        if server.poll() is None:
            server.send_signal(number)

    previous = {number: signal.signal(number, forward) for number in FORWARDED_SIGNALS}
    try:
        status = server.wait()
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        if server.poll() is None:  # the launcher itself failed: take the server down with it
            server.terminate()
            server.wait(timeout=30)
    return 0 if stopped else status


def wait_until_serving(url: str, server: subprocess.Popen, log: Path, timeout: float = 90.0
                       ) -> None:
    """Return once the dashboard at `url` answers its health check; a RuntimeError with the
    end of its `log` if `server` exits or `timeout` seconds pass first."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as answer:
                if answer.read() == b"ok":
                    return
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                raise RuntimeError(Path(log).read_text()[-2000:]) from None
            time.sleep(0.5)
