"""The dashboard under load: concurrent browser sessions over loopback uploading good and bad
files for a bounded time. Reports the latency of each answer (a prediction, or the one-line
refusal of a bad file), the server's memory over the run, whether it stayed up, and what it
wrote to disk.

Set-up: a small trained run (a baseline CNN on 64 phantoms, in a temporary folder) served by
`mammo-keras dashboard --max-upload-mb 5` from a temporary working folder; headless Chromium
(Playwright) opens `--sessions` pages, each in its own browser context (its own Streamlit
session), and uploads, in turn, a phantom DICOM, a PNG, a file that is no image, an 8 MB file
over the upload limit and a PNG that declares 200 megapixels, each under a new name, until
`--seconds` have passed. The latency of an upload is from `set_input_files` to the page showing
its answer. Memory is the Streamlit process's resident set, sampled twice a second.

    python benchmarks/dashboard_load.py --out benchmarks/results

Needs the dev extra (Streamlit, Playwright) and Chromium at /usr/bin/chromium.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from mammo_keras.dashboard.launch import wait_until_serving
from mammo_keras.devtools.local_ports import free_ports

CHROMIUM = Path("/usr/bin/chromium")
MAX_UPLOAD_MB = 5
KINDS = ("dicom", "png", "not_an_image", "too_large", "too_many_pixels")


def trained_run(folder: Path) -> Path:
    from mammo_keras.training import train

    run = folder / "run"
    train({"name": "load", "data": {"synthetic": {"count": 64, "size": 256}, "image_size": 64},
           "model": {"head": "gap"},
           "training": {"epochs": 1, "batch_size": 8, "tensorboard": False},
           "evaluation": {"resamples": 0}}, run, data_dir=folder / "data", verbose=0)
    return run


def upload_files(folder: Path, run: Path) -> dict[str, bytes]:
    """One file of each kind, as bytes."""
    import io

    import numpy as np
    from PIL import Image

    from mammo_keras.data import generate_phantom, PhantomSpec
    from mammo_keras.data.dicom_writer import write_dicom

    phantom = generate_phantom(PhantomSpec(seed=3, size=512))[0]
    dicom = write_dicom(folder / "case.dcm", phantom, laterality="L", view="CC").read_bytes()
    buffer = io.BytesIO()
    Image.fromarray(np.round(phantom * 255).astype(np.uint8)).save(buffer, "PNG")
    bomb = io.BytesIO()
    Image.new("1", (14000, 14000)).save(bomb, "PNG")  # 196 megapixels in a few kilobytes
    return {"dicom": dicom, "png": buffer.getvalue(), "not_an_image": b"just some notes\n" * 40,
            "too_large": os.urandom(8_000_000), "too_many_pixels": bomb.getvalue()}


SUFFIX = {"dicom": ".dcm", "png": ".png", "not_an_image": ".png", "too_large": ".dcm",
          "too_many_pixels": ".png"}


def serve(model: Path, workdir: Path) -> tuple[subprocess.Popen, str]:
    port = free_ports()[0]
    log = workdir / "server.log"
    server = subprocess.Popen(
        [sys.executable, "-m", "mammo_keras.cli", "dashboard", "--model", str(model), "--port",
         str(port), "--address", "127.0.0.1", "--max-upload-mb", str(MAX_UPLOAD_MB)],
        cwd=workdir, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_until_serving(url, server, log, timeout=120)
    return server, url


def streamlit_pid(launcher: subprocess.Popen) -> int:
    children = [int(pid) for task in Path(f"/proc/{launcher.pid}/task").iterdir()
                for pid in (task / "children").read_text().split()]
    return children[0] if children else launcher.pid


class MemorySampler(threading.Thread):
    """Samples a process's resident set (MiB) twice a second until stopped."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.samples, self.stopped = pid, [], threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(0.5):
            try:
                status = Path(f"/proc/{self.pid}/status").read_text()
            except OSError:
                return
            kib = next(int(line.split()[1]) for line in status.splitlines()
                       if line.startswith("VmRSS"))
            self.samples.append((time.monotonic(), kib / 1024))


def expected_answer(kind: str, name: str) -> str:
    """The text the page shows once it has answered an upload named `name`: its caption, the
    app's one-line refusal, or, over the size limit, Streamlit's own refusal (its uploader
    checks the size in the browser, and its server answers 413 to a larger request)."""
    if kind == "too_large":
        return "MB or smaller"
    return f"{name}:" if kind in ("dicom", "png") else f"Cannot use this upload. {name}"


async def session(browser, url: str, files: dict[str, Path], index: int, until: float,
                  results: list) -> None:
    context = await browser.new_context(viewport={"width": 1200, "height": 900})
    page = await context.new_page()
    await page.goto(url)
    await page.get_by_text("Upload a mammogram to see").wait_for(timeout=300_000)
    uploader = page.locator("input[type=file]")
    count = 0
    while time.monotonic() < until:
        kind = KINDS[(index + count) % len(KINDS)]
        source = files[kind]
        name = f"s{index:02d}-u{count:03d}{SUFFIX[kind]}"
        target = source.with_name(name)
        shutil.copyfile(source, target)
        started = time.monotonic()
        try:
            await uploader.set_input_files(str(target))
            await page.get_by_text(expected_answer(kind, name), exact=False).first.wait_for(
                timeout=180_000)
            results.append({"session": index, "kind": kind, "seconds": time.monotonic() - started,
                            "ok": True})
        except Exception as error:  # a timeout or a page error is a result of this benchmark
            results.append({"session": index, "kind": kind, "seconds": time.monotonic() - started,
                            "ok": False, "error": type(error).__name__})
        target.unlink()
        count += 1
    await context.close()


async def load(url: str, files: dict[str, Path], sessions: int, seconds: float) -> list[dict]:
    from playwright.async_api import async_playwright

    results: list[dict] = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking"])
        until = time.monotonic() + seconds
        await asyncio.gather(*(session(browser, url, files, index, until, results)
                               for index in range(sessions)))
        await browser.close()
    return results


def snapshot(folder: Path) -> dict[str, float]:
    return {str(path): path.stat().st_mtime for path in folder.rglob("*") if path.is_file()}


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def measure(sessions: int, seconds: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="dashboard-load-") as temporary:
        folder = Path(temporary)
        run = trained_run(folder)
        uploads = folder / "uploads"
        uploads.mkdir()
        files = {}
        for kind, data in upload_files(folder, run).items():
            files[kind] = uploads / f"{kind}{SUFFIX[kind]}"
            files[kind].write_bytes(data)
        workdir = folder / "server"
        workdir.mkdir()
        run_before = snapshot(run)
        server, url = serve(run / "model.keras", workdir)
        workdir_before = snapshot(workdir)
        sampler = MemorySampler(streamlit_pid(server))
        sampler.start()
        started = time.monotonic()
        results = asyncio.run(load(url, files, sessions, seconds))
        wall = time.monotonic() - started
        sampler.stopped.set()
        alive = server.poll() is None
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=5) as answer:
            healthy = answer.read() == b"ok"
        server.terminate()
        server.wait(timeout=60)
        changed_run = sorted(set(snapshot(run).items()) - set(run_before.items()))
        written = sorted(set(snapshot(workdir)) - set(workdir_before) - {str(workdir / "server.log")})
    memory = [mib for _, mib in sampler.samples]
    half = len(memory) // 2
    by_kind = {}
    for kind in KINDS:
        times = [row["seconds"] for row in results if row["kind"] == kind and row["ok"]]
        by_kind[kind] = {"answers": len(times), "median_s": statistics.median(times) if times
                         else None, "p95_s": percentile(times, 0.95) if times else None}
    answered = [row["seconds"] for row in results if row["ok"]]
    predictions = [row["seconds"] for row in results if row["ok"] and row["kind"] in
                   ("dicom", "png")]
    return {"sessions": sessions, "seconds": seconds, "wall_s": wall,
            "uploads": len(results), "answered": len(answered),
            "failed": [row for row in results if not row["ok"]],
            "p50_s": statistics.median(answered), "p95_s": percentile(answered, 0.95),
            "prediction_p95_s": percentile(predictions, 0.95) if predictions else None,
            "by_kind": by_kind, "server_alive": alive and healthy,
            "memory_mib": {"first_half_peak": max(memory[:half]) if half else None,
                           "second_half_peak": max(memory[half:]) if memory else None,
                           "end": memory[-1] if memory else None},
            "run_folder_changed": changed_run, "written_by_server": written}


def write(result: dict, out: Path) -> None:
    from mammo_keras.provenance import provenance

    record = {**result, "provenance": provenance(),
              "machine": provenance()["hardware"],
              "command": f"python benchmarks/dashboard_load.py --sessions {result['sessions']} "
                         f"--seconds {result['seconds']:g} --out benchmarks/results"}
    out.mkdir(parents=True, exist_ok=True)
    (out / "dashboard_load.json").write_text(json.dumps(record, indent=2) + "\n")
    memory = result["memory_mib"]
    lines = [
        "# The dashboard under load", "",
        f"`{record['command']}` at commit {record['provenance']['commit']}, "
        f"{record['machine']}: {result['sessions']} headless-Chromium sessions over loopback, "
        f"each uploading in turn a DICOM, a PNG, a file that is no image, an 8 MB file (the "
        f"limit is {MAX_UPLOAD_MB} MB) and a PNG declaring 196 megapixels, for "
        f"{result['seconds']:g} s.", "",
        f"- uploads: {result['uploads']}, answered: {result['answered']}, failed: "
        f"{len(result['failed'])}; the server {'stayed up' if result['server_alive'] else 'DIED'}",
        f"- latency of an answer: median {result['p50_s']:.1f} s, p95 {result['p95_s']:.1f} s; "
        f"of a prediction (DICOM / PNG): p95 {result['prediction_p95_s']:.1f} s",
        f"- Streamlit's memory: peak {memory['first_half_peak']:.0f} MiB in the first half, "
        f"{memory['second_half_peak']:.0f} MiB in the second, {memory['end']:.0f} MiB at the end",
        f"- files the server wrote in its working folder: {len(result['written_by_server'])}; "
        f"files of the run folder changed: {len(result['run_folder_changed'])}", "",
        "| upload | answers | median (s) | p95 (s) |", "|---|---:|---:|---:|"]
    for kind, row in result["by_kind"].items():
        median = "-" if row["median_s"] is None else f"{row['median_s']:.1f}"
        p95 = "-" if row["p95_s"] is None else f"{row['p95_s']:.1f}"
        lines.append(f"| {kind} | {row['answers']} | {median} | {p95} |")
    lines += ["", "On 2 cores twenty sessions queue for the same CPU: the latency is mostly "
              "waiting for the model, which every session shares.", ""]
    (out / "dashboard_load.md").write_text("\n".join(lines))
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    write(measure(args.sessions, args.seconds), Path(args.out))


if __name__ == "__main__":
    main()
