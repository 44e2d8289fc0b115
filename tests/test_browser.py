"""The report as a person sees it: a real small compare, rendered and opened in a real browser (Playwright driving
Debian's chromium; Playwright's own browser download needs a CDN this testbed cannot reach, so
scripts/install-browser.sh installs the distribution's). Screenshots are saved under the test's tmp dir.

Without /usr/bin/chromium (or $HARNESS_CHROMIUM) the tests skip, unless HARNESS_REQUIRE_BROWSER=1 (CI sets it, so
they cannot silently skip there).
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("HARNESS_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync"]
SMALL = ["--preset", "smoke", "--set", "pool.n=48", "--set", "train.per_device_batch_size=8", "--limit", "12",
         "--tasks", "synthetic_id,format_probe,humaneval"]
# Model output that would run if the report ever put it on the page as HTML.
PAYLOAD = ('<script>window.__xss = "script"</script><img src=x onerror="window.__xss = \'onerror\'">'
           ' PAYLOAD-MARKER')

if not Path(CHROMIUM).is_file():
    if os.environ.get("HARNESS_REQUIRE_BROWSER") == "1":
        raise RuntimeError(f"no chromium at {CHROMIUM}; run scripts/install-browser.sh")
    pytest.skip(f"no chromium at {CHROMIUM} (scripts/install-browser.sh installs it)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")


def harness(*args: str) -> subprocess.CompletedProcess:
    got = subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, cwd=ROOT,
                         timeout=900)
    assert got.returncode == 0, got.stdout + got.stderr
    return got


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """A real small compare (sft, cft, cgd on three tasks) with a script payload injected into one model's
    stored response, re-rendered with `harness report`."""
    out = tmp_path_factory.mktemp("browser-runs")
    harness("compare", "--methods", "sft,cft,cgd", *SMALL, "--output-dir", str(out), "--run-id", "b")
    run = out / "b"
    path = run / "samples" / "sft" / "synthetic_id.jsonl"
    recs = [json.loads(x) for x in path.read_text().splitlines()]
    recs[0]["response"] = PAYLOAD
    recs[0]["responses"] = [PAYLOAD]
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    harness("report", str(run))
    return run


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def _open(browser, report: Path, width: int, height: int):
    page = browser.new_page(viewport={"width": width, "height": height})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto((report / "report.html").as_uri())
    page.wait_for_selector("#ex-count")
    return page, errors


def test_verdict_is_in_the_first_viewport(browser, report, tmp_path):
    page, errors = _open(browser, report, 1400, 900)
    box = page.locator("#verdict").bounding_box()
    assert box is not None and box["y"] < 900 * 2 / 3, box
    assert page.locator("#verdict table tr").count() >= 4  # header + sft, cft, cgd against base (+ pairs)
    assert page.locator("#verdict ul.sentences li").count() >= 3
    page.screenshot(path=str(tmp_path / "desktop-first-screen.png"))
    page.screenshot(path=str(tmp_path / "desktop-full.png"), full_page=True)
    assert not errors, errors


def test_explorer_filters_and_base_right_method_wrong_count(browser, report, tmp_path):
    page, errors = _open(browser, report, 1400, 900)
    results = json.loads((report / "results.json").read_text())
    data = json.loads(page.locator("#explorer-data").text_content())
    total = len(data["items"])
    assert page.locator("#ex-count").text_content() == f"{total} of {total} items"
    # Every item of every task: the n of base's primary-metric rows in results.json, summed over the three tasks.
    base_rows = [r for r in results["rows"] if r["model"] == "base"
                 and r["metric"] == results["primary_metrics"][r["task"]]]
    assert len(base_rows) == 3 and total == sum(r["n"] for r in base_rows)
    page.select_option("#ex-model", label="cft")
    page.select_option("#ex-outcome", value="base_right_model_wrong")
    # What results.json implies: on 0/1 primary metrics, the losses of cft against base are the items base got
    # right and cft wrong.
    losses = sum(c["losses"] for c in results["comparisons"] if c["model"] == "cft" and c["baseline"] == "base"
                 and c["metric"] == results["primary_metrics"][c["task"]])
    assert page.locator("#ex-count").text_content() == f"{losses} of {total} items"
    assert page.locator("#ex-list .sample").count() == min(losses, 30)
    page.select_option("#ex-outcome", value="all")
    fp_index = next(i for i, t in enumerate(data["tasks"]) if t["label"].startswith("format_probe"))
    page.select_option("#ex-task", value=str(fp_index))
    fp = sum(1 for it in data["items"] if it["t"] == fp_index)
    assert page.locator("#ex-count").text_content() == f"{fp} of {total} items" and fp < total
    page.fill("#ex-search", "no text any item contains 12345")
    assert page.locator("#ex-count").text_content() == f"0 of {total} items"
    page.screenshot(path=str(tmp_path / "explorer.png"))
    assert not errors, errors


def test_model_output_with_script_does_not_execute(browser, report, tmp_path):
    page, errors = _open(browser, report, 1400, 900)
    data = json.loads(page.locator("#explorer-data").text_content())
    page.select_option("#ex-task", value=str(next(i for i, t in enumerate(data["tasks"])
                                                  if t["label"].startswith("synthetic_id"))))
    page.fill("#ex-search", "PAYLOAD-MARKER")
    assert page.locator("#ex-count").text_content().startswith("1 of ")
    card = page.locator("#ex-list .sample").first
    assert "onerror=" in card.text_content() and "<script>" in card.text_content()  # shown as text
    assert card.locator("img, script").count() == 0
    page.wait_for_timeout(300)
    assert page.evaluate("window.__xss") is None
    card.screenshot(path=str(tmp_path / "payload-as-text.png"))
    assert not errors, errors


def test_nothing_overflows_a_phone(browser, report, tmp_path):
    page, errors = _open(browser, report, 390, 844)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, width
    page.screenshot(path=str(tmp_path / "phone-first-screen.png"))
    page.screenshot(path=str(tmp_path / "phone-full.png"), full_page=True)
    assert not errors, errors
