"""Screenshots of the dashboard for the README (docs/dashboard-*.png), in headless Chromium.

Serve the dashboard first, on a model trained on synthetic phantoms only (never on MIAS or
other licensed images: the screenshots are committed), e.g.

    mammo-keras dashboard --model runs/quickstart/model.keras --port 8765 &
    python docs/make_screenshots.py --url http://localhost:8765 --case CASE.dcm
"""

from __future__ import annotations

import argparse
from pathlib import Path

from playwright.sync_api import sync_playwright

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="where the dashboard is served")
    parser.add_argument("--case", required=True, help="a synthetic phantom to upload")
    parser.add_argument("--out", default=str(Path(__file__).parent), help="folder (docs/)")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    out = Path(args.out)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=args.chromium, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 950})
        page.goto(args.url)
        page.get_by_text("Upload a mammogram to see").wait_for(timeout=180_000)
        page.locator("input[type=file]").set_input_files(args.case)
        page.get_by_text("P(malignant) =").wait_for(timeout=120_000)
        page.get_by_text("Grad-CAM++").click()
        page.wait_for_timeout(4000)
        page.screenshot(path=str(out / "dashboard-case.png"))
        page.set_viewport_size({"width": 1400, "height": 1900})
        page.get_by_text("Cohort").first.click()
        page.get_by_text("Errors at this threshold").wait_for(timeout=120_000)
        page.wait_for_timeout(6000)
        page.screenshot(path=str(out / "dashboard-cohort.png"))
        browser.close()


if __name__ == "__main__":
    main()
