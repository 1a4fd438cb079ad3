"""Screenshots of the MLflow UI for docs/: the runs table and one run's page.

Not part of the package or the test suite; run it by hand after a few real runs:

    mlflow ui --backend-store-uri sqlite:///<store>/mlflow.db --port 5077 &
    python docs/mlflow_screenshots.py http://127.0.0.1:5077 <run id> docs/

Needs Playwright (`pip install playwright`) and a Chromium on the PATH (`apt-get install
chromium`); Playwright's own browser download is not used.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

VIEWPORT = {"width": 1680, "height": 640}
RUN_PAGE = {"width": 1680, "height": 1500}


def main(base: str, run_id: str, out_dir: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=shutil.which("chromium"),
                                     args=["--no-sandbox"])
        page = browser.new_page(viewport=VIEWPORT)
        experiment = _experiment_of(base, run_id)
        page.goto(f"{base}/#/experiments/{experiment}/runs")
        page.get_by_text("Training runs").first.wait_for()
        _tidy(page)
        page.get_by_role("button", name="Model training").click()
        _toggle_columns(page, "User", "Version", "Dataset", "Models")
        _expand_sweeps(page)
        _widen_run_names(page)
        page.wait_for_timeout(1500)
        page.screenshot(path=str(out_dir / "mlflow-runs.png"))

        page.set_viewport_size(RUN_PAGE)  # tall enough for the params below the metrics
        page.goto(f"{base}/#/experiments/{experiment}/runs/{run_id}")
        page.get_by_text("Parameters").first.wait_for()
        _tidy(page)
        page.wait_for_timeout(1500)
        page.screenshot(path=str(out_dir / "mlflow-run.png"))
        browser.close()


def _experiment_of(base: str, run_id: str) -> str:
    import json
    from urllib.request import urlopen

    with urlopen(f"{base}/api/2.0/mlflow/runs/get?run_id={run_id}") as reply:
        return json.load(reply)["run"]["info"]["experiment_id"]


def _tidy(page) -> None:
    """Close the assistant panel and first-visit tips: they cover the table."""
    for name in ("Close", "Got it"):
        for button in page.get_by_role("button", name=name).all():
            if button.is_visible():
                button.click()


def _toggle_columns(page, *names: str) -> None:
    """Show the Source/Version neighbours that are hidden by default, hide the empty ones."""
    page.get_by_role("button", name="Columns", exact=True).click()
    menu = page.locator("[role=menu], [role=dialog]")
    for name in names:
        menu.get_by_text(name, exact=True).first.click()
    page.keyboard.press("Escape")


def _expand_sweeps(page) -> None:
    """Open each sweep parent, so its child runs show."""
    for row in page.get_by_role("row").filter(has_text="sweep · ").all():
        toggle = row.locator("button").first
        if toggle.is_visible():
            toggle.click()


def _widen_run_names(page) -> None:
    """Drag the Run Name column's edge so names show whole."""
    header = page.get_by_role("columnheader", name="Run Name").first
    box = header.bounding_box()
    if box is None:
        return
    edge_x, mid_y = box["x"] + box["width"] - 2, box["y"] + box["height"] / 2
    page.mouse.move(edge_x, mid_y)
    page.mouse.down()
    page.mouse.move(edge_x + 330, mid_y, steps=10)
    page.mouse.up()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], Path(sys.argv[3]))
