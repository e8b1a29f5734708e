"""The report on a small hand-made store (a sweep with a failed run in it) and on bad input;
and its HTML page as headless Chromium renders it."""

from __future__ import annotations

import shutil
import socket
import tempfile
from pathlib import Path

import mlflow
import numpy as np
import pytest

from calo.report import ReportSource, build_report, render_html, write_report
from calo.report.__main__ import main as report_main
from calo.report.profiles import PROFILES_ARTIFACT

CELLS = np.arange(25)
MACHINE = {"machine/cpu_model": "Test CPU 9000", "machine/cores": "2",
           "machine/hostname": "testhost", "machine/isa": "avx512_vnni"}


def _profile(centre: float, width: float, scale: float) -> dict[str, list[float]]:
    mean = scale * np.exp(-0.5 * ((CELLS - centre) / width) ** 2)
    return {"mean": mean.tolist(), "error": (0.02 * mean + 1e-4).tolist()}


def _profiles(shift: float) -> dict:
    sample = {axis: _profile(12 + shift, 1.5, 2.0) for axis in ("x", "y")}
    sample["z"] = _profile(13.8 + shift, 4.5, 0.4)
    return sample


def _physics(sample: str, y_mean: float) -> dict[str, float]:
    return {f"physics/{sample}/y_mean": y_mean, f"physics/{sample}/y_mean_err": 0.001,
            f"physics/{sample}/y_std": 1.46, f"physics/{sample}/z_mean": 13.8,
            f"physics/{sample}/z_std": 4.5}


def _bench(throughput: float, fp32: float | None) -> dict[str, float]:
    metrics = {"bench/threads": 2, "bench/streams": 1, "bench/latency_median_ms_b1": 30.0,
               "bench/latency_median_ms_b64": 64_000 / throughput,
               "bench/throughput_b64": throughput}
    if fp32 is not None:
        metrics |= {"bench/fp32_throughput_b64": fp32, "bench/speedup_b64": throughput / fp32}
    return metrics


def _child(client: mlflow.MlflowClient, experiment_id: str, parent: str, job: int,
           precision: str, metrics: dict[str, float], profiles: dict | None,
           status: str = "FINISHED", error: str | None = None) -> str:
    tags = {**MACHINE, "mlflow.parentRunId": parent, "sweep/role": "job", "sweep/job": str(job),
            "sweep/overrides": f"model=tiny precision={precision}", "generator_trained": "true"}
    if error:
        tags["error"] = error
    run = client.create_run(experiment_id, run_name=f"{precision}@local", tags=tags)
    run_id = run.info.run_id
    for key, value in {"precision.name": precision, "hw/threads": "2", "hw/streams": "1",
                       "data.source": "reference"}.items():
        client.log_param(run_id, key, value)
    for key, value in metrics.items():
        client.log_metric(run_id, key, value)
    if profiles is not None:
        client.log_dict(run_id, {"unit": "GeV per cell", "samples": profiles},
                        PROFILES_ARTIFACT)
    client.set_terminated(run_id, status)
    return run_id


@pytest.fixture
def sweep_store(store: Path) -> tuple[str, str]:
    """Experiment ``paper_tables``: a sweep of fp32, int8_inc (with its own threads x streams
    grid) and int8_tflite, which FAILED after its benchmark. Returns (tracking URI, parent)."""
    uri = f"sqlite:///{store / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    experiment_id = client.create_experiment("paper_tables",
                                             (store / "artifacts").as_uri())
    parent = client.create_run(experiment_id, run_name="sweep:paper_tables",
                               tags={**MACHINE, "sweep/role": "parent",
                                     "sweep/name": "paper_tables"}).info.run_id
    fp32 = {**_bench(80.0, None), **_physics("reference", 12.0), **_physics("fp32", 12.02),
            **_physics("engine", 12.02), "physics/floor/svn": 1e-4, "physics/fp32/svn": 0.01,
            "physics/engine/svn": 0.01}
    _child(client, experiment_id, parent, 0, "fp32", fp32,
           {"reference": _profiles(0.0), "fp32": _profiles(0.05)})
    grid = {"bench/grid/1x1/throughput": 110.0, "bench/grid/1x1/fp32_throughput": 41.0,
            "bench/grid/1x1/speedup": 2.68, "bench/grid/2x1/throughput": 200.0,
            "bench/grid/2x1/fp32_throughput": 80.0, "bench/grid/2x1/speedup": 2.5}
    int8 = {**_bench(200.0, 80.0), **grid, **_physics("reference", 12.0),
            **_physics("fp32", 12.02), **_physics("engine", 12.04), "physics/engine/svn": 0.02,
            "physics/engine_vs_fp32/svn": 0.003, "physics/engine_vs_fp32/pixel_abs_mean": 0.21,
            "physics/engine_vs_fp32/pixel_abs_std": 0.04}
    _child(client, experiment_id, parent, 1, "int8_inc", int8,
           {"reference": _profiles(0.0), "fp32": _profiles(0.05), "engine": _profiles(0.1)})
    _child(client, experiment_id, parent, 2, "int8_tflite", _bench(240.0, 80.0), None,
           status="FAILED", error="engine output has NaN cells")
    client.set_terminated(parent, "FAILED")
    return uri, parent


def _table(report, key: str):
    return next(table for table in report.tables if table.key == key)


def _row(table, label: str) -> list[str]:
    return next([cell.text for cell in row] for row in table.rows if row[0].text == label)


def test_tables_put_measured_values_beside_the_papers(sweep_store) -> None:
    uri, parent = sweep_store
    report = build_report(ReportSource(uri, "paper_tables"))
    assert report.sweep.parent.run_id == parent and len(report.runs) == 3
    speed = _row(_table(report, "table1"), "int8_inc")
    assert "2.50x" in speed and "1.73x" in speed and "32.3" in speed and "200" in speed
    assert _row(_table(report, "table1"), "fp32")[-2] == "M1"
    shapes = _table(report, "table3")
    reference = _row(shapes, "reference (simulated)")
    assert reference[1] == "12.0000 ± 0.0010" and reference[2] == "12.00"
    assert _row(shapes, "int8_inc")[1:3] == ["12.0400 ± 0.0010", "12.03"]
    assert _row(_table(report, "table4"), "int8_inc")[1:4] == ["0.02", "0.003", "0.053"]
    assert _row(_table(report, "table5"), "int8_inc")[1:3] == ["0.21", "0.04"]
    assert _row(_table(report, "table5"), "fp16_tflite (paper only)")[5:7] == ["0.133", "0.291"]
    run_cell = _table(report, "table1").rows[0][-1]
    assert run_cell.link.endswith(f"/runs/{report.runs[0].record.run_id}")


def test_failed_run_is_listed_and_the_rest_still_renders(sweep_store, tmp_path: Path) -> None:
    uri, _ = sweep_store
    report = build_report(ReportSource(uri, "paper_tables"))
    failed = [item for item in report.missing if "int8_tflite" in item]
    assert any("FAILED" in item and "engine output has NaN cells" in item for item in failed)
    assert any("Figures 5-6" in item for item in failed)
    # what the failed run did measure (its benchmark) is shown, marked as failed
    assert any(row[0].text.startswith("int8_tflite (job 2, FAILED")
               for row in _table(report, "table1").rows)
    assert {figure.key for figure in report.figures} == {"figure4_int8_inc", "figure5",
                                                         "figure6"}
    html, markdown = write_report(report, tmp_path / "out")
    text = markdown.read_text()
    assert "## What is missing" in text and "engine output has NaN cells" in text
    assert "![Figure 5: shower shapes, linear scale](figure5.png)" in text
    assert (tmp_path / "out" / "figure4_int8_inc.png").stat().st_size > 1000
    page = html.read_text()
    assert page.count("data:image/png;base64,") == 3 and "<script" not in page


def test_unknown_experiment_and_sweep_say_so_and_keep_the_papers_values(sweep_store) -> None:
    uri, _ = sweep_store
    report = build_report(ReportSource(uri, "no_such_experiment"))
    assert report.missing[0] == f"no experiment named 'no_such_experiment' in {uri}"
    assert _row(_table(report, "table1"), "int8_inc (paper only)")[-3] == "1.73x"
    report = build_report(ReportSource(uri, "paper_tables", sweep="no_such_sweep"))
    assert report.missing[0].startswith("no sweep 'no_such_sweep' in experiment")
    assert "Table 3" in render_html(report)


def test_sweep_without_runs_is_reported(store: Path) -> None:
    uri = f"sqlite:///{store / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    experiment_id = client.create_experiment("empty", (store / "artifacts").as_uri())
    parent = client.create_run(experiment_id, tags={"sweep/role": "parent"}).info.run_id
    report = build_report(ReportSource(uri, "empty", sweep=parent))
    assert any(item.endswith("has no runs") for item in report.missing)
    assert report.runs == [] and len(report.tables) == 4


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_unreachable_store_is_reported(tmp_path: Path) -> None:
    uri = f"http://127.0.0.1:{_free_port()}"
    report = build_report(ReportSource(uri, "paper_tables"))
    assert len(report.missing) >= 1 and report.missing[0].startswith(
        f"cannot reach the MLflow tracking server at {uri}")
    missing_file = build_report(ReportSource(f"sqlite:///{tmp_path / 'none.db'}", "calo"))
    assert missing_file.missing[0].startswith("no MLflow store at")
    assert not (tmp_path / "none.db").exists()


def test_cli_writes_the_report_and_logs_it_to_the_parent(sweep_store, tmp_path: Path,
                                                         capsys) -> None:
    uri, parent = sweep_store
    report_main(["--tracking-uri", uri, "--experiment", "paper_tables", "--sweep", parent,
                 "--out", str(tmp_path / "cli")])
    assert "report.html" in capsys.readouterr().out
    assert (tmp_path / "cli" / "report.html").is_file()
    logged = {a.path for a in mlflow.MlflowClient(uri).list_artifacts(parent, "report")}
    assert {"report/report.html", "report/report.md", "report/figure5.png"} <= logged


def _chromium() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


# The figures' own colours (calo.report.figures.COLOURS): present only if the images drew.
FIGURE_COLOURS = {"reference": (0xD6, 0x27, 0x28), "int8_inc": (0xE3, 0x77, 0xC2)}


@pytest.mark.skipif(_chromium() is None,
                    reason="chromium and chromedriver not found (apt-get install chromium "
                           "chromium-driver; .ci/run installs them)")
def test_page_shows_tables_and_figures_in_headless_chromium(sweep_store, tmp_path: Path) -> None:
    from matplotlib.image import imread
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    uri, _ = sweep_store
    html, _ = write_report(build_report(ReportSource(uri, "paper_tables")), tmp_path / "page")
    browser, driver = _chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                     "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync",
                     f"--user-data-dir={tempfile.mkdtemp(dir=tmp_path)}",
                     "--window-size=1300,1000"):
        options.add_argument(argument)
    chrome = webdriver.Chrome(options=options, service=Service(driver))
    try:
        chrome.get(html.as_uri())
        headings = chrome.execute_script(
            "return [...document.querySelectorAll('h2')].map(h => h.textContent)")
        tables = chrome.execute_script("return document.querySelectorAll('table').length")
        images = chrome.execute_script(
            "return [...document.images].map(i => [i.complete, i.naturalWidth])")
        height = chrome.execute_script("return document.documentElement.scrollHeight")
        chrome.set_window_size(1300, height + 300)  # the window's frame takes some of it
        visible = chrome.execute_script("return window.innerHeight")
        chrome.save_screenshot(str(tmp_path / "page.png"))
    finally:
        chrome.quit()
    for number in ("Table 1", "Table 3", "Table 4", "Table 5", "Figure 4", "Figure 5",
                   "Figure 6"):
        assert any(heading.startswith(number) for heading in headings), number
    assert tables == 5  # the paper's four and the list of runs
    assert len(images) == 3 and all(done and width > 500 for done, width in images)
    assert visible >= height  # the screenshot holds the whole page
    pixels = (imread(tmp_path / "page.png")[..., :3] * 255).astype(int)
    for name, colour in FIGURE_COLOURS.items():
        close = np.all(np.abs(pixels - np.array(colour)) <= 12, axis=-1).sum()
        assert close > 100, f"{name}'s colour is not on the screenshot: figures not drawn"
