"""The master's web UI in headless Chromium (Debian's chromium and chromium-driver, driven by Selenium)
while a workload runs: each page shows the cluster's real state. Screenshots go to
$MESOSKUBE_ARTIFACTS (default: the test's tmp dir)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from mesoskube.cluster.local import free_port
from tests.cluster.mesos import RawFramework, task
from tests.helpers import eventually

CHROMIUM = shutil.which("chromium")
DRIVER = shutil.which("chromedriver")

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER), reason="needs Debian's chromium and chromium-driver (apt-get install ...)"
)


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,800"):
        opts.add_argument(arg)
    drv = webdriver.Chrome(service=Service(executable_path=DRIVER), options=opts)
    try:
        yield drv
    finally:
        drv.quit()


def _rows(drv, css: str) -> list[str]:
    from selenium.webdriver.common.by import By

    return [e.text for e in drv.find_elements(By.CSS_SELECTOR, css)]


@pytest.mark.timeout(180)
def test_ui_pages_show_the_running_workload(
    kube, namespace, fake_nodes, own_master, browser, tmp_path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    nodes = fake_nodes(2, "cpu=4,memory=8Gi,label:zone=a")
    port = free_port()
    own_master(httpPort=port, httpHost="127.0.0.1", httpAuth="none")
    fw = RawFramework.subscribe(kube, namespace, "ui-fw")
    offers = fw.wait_offers(2)
    fw.accept(offers[0], [task("long-1", 1, 512), task("long-2", 1, 512)])
    fw.accept(offers[1], [task("short-1", 1, 256, run_seconds=0.5)])
    fw.wait_task_state("short-1", "TASK_FINISHED")
    fw.wait_task_state("long-1", "TASK_RUNNING")
    out = Path(os.environ.get("MESOSKUBE_ARTIFACTS") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)

    browser.get(f"http://127.0.0.1:{port}/")
    agents = eventually(
        lambda: (r := _rows(browser, "tr.agent")) and len(r) == 2 and r, timeout=20, what="agents"
    )
    for n in nodes:
        assert any(row.startswith(n) and "zone=a" in row for row in agents), agents
    assert any("2 / " in row for row in agents)  # two 1-cpu tasks hold cpus on one agent
    browser.save_screenshot(str(out / "ui-agents.png"))

    browser.find_element(By.ID, "tab-frameworks").click()
    (row,) = eventually(lambda: _rows(browser, "tr.framework"), timeout=10, what="framework row")
    assert row.startswith("ui-fw") and "yes" in row
    browser.save_screenshot(str(out / "ui-frameworks.png"))

    browser.find_element(By.ID, "tab-tasks").click()
    eventually(lambda: len(_rows(browser, "tr.task")) == 3, timeout=10, what="3 task rows")
    Select(browser.find_element(By.ID, "filter-state")).select_by_value("TASK_RUNNING")
    running = eventually(
        lambda: (r := _rows(browser, "tr.task")) and len(r) == 2 and r, timeout=10, what="filter"
    )
    assert sorted(r.split()[0] for r in running) == ["long-1", "long-2"]
    browser.save_screenshot(str(out / "ui-tasks.png"))

    browser.find_element(By.ID, "tab-roles").click()
    rows = eventually(lambda: _rows(browser, "tr.role"), timeout=10, what="role rows")
    # Other tests' MesosRoles are cluster-wide and may be listed too; this test's framework is in "*".
    (role,) = [r for r in rows if r.startswith("* ")] or rows[:1]
    assert role.startswith("*") and "25.0 %" in role  # 2 of 8 cpus
    eventually(
        lambda: browser.find_elements(By.CSS_SELECTOR, "polyline.share-line"), timeout=15, what="chart"
    )
    browser.save_screenshot(str(out / "ui-roles.png"))
