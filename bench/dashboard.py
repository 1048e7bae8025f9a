"""The dashboard in headless Chromium. (0) The first "Open VS Code" on a ready
environment (a code-server that has served nobody yet) → the workbench showing, side by
side with the same kind of environment opened by its direct URL (OpenSSH `ssh -L` to
code-server, no dev8 in the path). (1) Click "Create environment" → VS Code's
workbench showing, through the dashboard (progress view, environment page, "Open VS Code")
vs the same done by a script (REST create, wait for `ready` on the event stream, open the
VS Code URL): median of N each, the image already present, and the ratio; for scale,
the workbench of an environment already running. (2) `ready` → VS Code's page answered:
the proxy holding the request until code-server answers vs the "Starting…" page's reload
every second. (3) Page weight of each dashboard page: bytes transferred on a first load
(empty cache) and on a later visit (cached static files). Usage:
    python -m bench.dashboard [--runs 5] [--image dev8/fullstack:latest] [--only first-open]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import httpx

from bench.common import control_key_file, dev8_server, median, published_ssh_port, report, wait_ready
from bench.proxy import VSCODE, tunnel
from tests.support import CHROMIUM, CHROMIUM_ARGS, Dev8Server, User, log_in, set_web_password, unique

PAGES = ["/", "/new", "/settings"]
WORKBENCH = ".monaco-workbench .part.editor"  # the workbench laid out, not only its first element


def via_dashboard(page, server: Dev8Server, image: str) -> float:  # type: ignore[no-untyped-def]
    page.goto(server.url + "/new")
    name = unique("b")
    page.fill("#f-name", name)
    page.fill("#f-image", image)
    start = time.perf_counter()
    page.click("#create-button")
    page.wait_for_url(server.url + f"/environments/{name}", timeout=300_000)
    return click_open_vscode(page) - start


def click_open_vscode(page) -> float:  # type: ignore[no-untyped-def]
    """Click Open VS Code on an environment's page: when its workbench showed in the new tab."""
    with page.context.expect_page() as opened:
        page.click("#open-vscode")
    vscode = opened.value
    vscode.wait_for_selector(WORKBENCH, timeout=120_000)
    shown = time.perf_counter()
    vscode.close()
    return shown


def code_server_up(client: httpx.Client, url: str) -> None:
    """Until code-server answers (it starts a moment after `ready`): both ways start from there."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if client.get(url, timeout=10).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"code-server did not answer at {url}")


def clear_cache(page) -> None:  # type: ignore[no-untyped-def]
    """An empty HTTP cache: a browser opening VS Code for the first time."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.clearBrowserCache")
    cdp.detach()


def first_open_via_dashboard(page, server: Dev8Server, user: User, image: str) -> float:  # type: ignore[no-untyped-def]
    """A ready environment's page → click Open VS Code → the workbench showing (empty cache)."""
    api = user.http()
    name = unique("f")
    api.post("/environments", json={"name": name, "image": image}).raise_for_status()
    wait_ready(api, name)
    code_server_up(user.script(), f"/@{user.username}/{name}/apps/vscode/healthz")
    page.goto(server.url + f"/environments/{name}")
    page.wait_for_selector("#open-vscode")
    clear_cache(page)
    start = time.perf_counter()
    elapsed = click_open_vscode(page) - start
    api.delete(f"/environments/{name}")
    return elapsed


def first_open_direct(page, server: Dev8Server, user: User, image: str, keys: Path) -> float:  # type: ignore[no-untyped-def]
    """The same for an environment's code-server reached straight through `ssh -L`."""
    api = user.http()
    name = unique("d")
    env = api.post("/environments", json={"name": name, "image": image}).json()
    wait_ready(api, name)
    folder = httpx.URL(env["vscode_url"]).params["folder"]
    with tunnel(published_ssh_port(server, name), control_key_file(server, name, keys), VSCODE) as port:
        code_server_up(httpx.Client(), f"http://127.0.0.1:{port}/healthz")
        clear_cache(page)
        start = time.perf_counter()
        page.goto(f"http://127.0.0.1:{port}/?folder={folder}")
        page.wait_for_selector(WORKBENCH, timeout=120_000)
        elapsed = time.perf_counter() - start
    page.goto("about:blank")
    api.delete(f"/environments/{name}")
    return elapsed


def open_running(page, url: str) -> float:  # type: ignore[no-untyped-def]
    """The workbench of an environment that is already up (code-server started)."""
    start = time.perf_counter()
    page.goto(url)
    page.wait_for_selector(WORKBENCH, timeout=120_000)
    return time.perf_counter() - start


def via_script(page, server: Dev8Server, user: User, image: str) -> tuple[float, str]:  # type: ignore[no-untyped-def]
    api = user.http()
    name = unique("s")
    start = time.perf_counter()
    env = api.post("/environments", json={"name": name, "image": image}).json()
    wait_ready(api, name)
    page.goto(env["vscode_url"])
    page.wait_for_selector(WORKBENCH, timeout=120_000)
    return time.perf_counter() - start, env["vscode_url"]


def vscode_page_after_ready(server: Dev8Server, user: User, image: str, browser: httpx.Client,
                            reload_every: float | None) -> float:
    """`ready` → VS Code's page answered: one request that the proxy holds until
    code-server answers, or (``reload_every``) the "Starting…" page's way: a request that
    fails at once, again every ``reload_every`` seconds."""
    api = user.http()
    name = unique("p")
    api.post("/environments", json={"name": name, "image": image}).raise_for_status()
    url = f"/@{user.username}/{name}/apps/vscode/"  # the relay a browser gets on VS Code's own host
    wait_ready(api, name)
    start = time.perf_counter()
    accept = "application/json" if reload_every else "text/html"
    while browser.get(url, headers={"accept": accept}, timeout=60).status_code in (502, 503):
        time.sleep(reload_every or 0)
    elapsed = time.perf_counter() - start
    api.delete(f"/environments/{name}")
    return elapsed


def page_weight(context, url: str) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """KB transferred loading ``url`` with an empty cache, then again from another page."""
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.clearBrowserCache")
    sizes: list[float] = []
    cdp.on("Network.loadingFinished", lambda e: sizes.append(e["encodedDataLength"]))
    page.goto(url)
    page.wait_for_load_state("networkidle")
    first = sum(sizes) / 1024
    page.goto("about:blank")
    sizes.clear()
    page.goto(url)
    page.wait_for_load_state("networkidle")
    cached = sum(sizes) / 1024
    page.close()
    return first, cached


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--image", default="dev8/fullstack:latest")
    parser.add_argument("--only", choices=["first-open"], help="run only this part")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright
    with dev8_server() as (server, user), sync_playwright() as p:
        set_web_password(user)
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        page = context.new_page()
        log_in(page, server, user, "/")
        direct_page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
        through, direct = [], []
        with tempfile.TemporaryDirectory() as keys:
            for _ in range(args.runs):  # interleaved, so both see the same machine state
                through.append(first_open_via_dashboard(page, server, user, args.image))
                direct.append(first_open_direct(direct_page, server, user, args.image, Path(keys)))
        report(f"first Open VS Code on a ready environment → workbench ({args.image}, median of {args.runs})", [
            ("click Open VS Code on its page (dev8)", median(through), "s"),
            ("its direct URL over ssh -L", median(direct), "s"),
            ("ratio dev8 / direct", median(through) / median(direct), "x")])
        if args.only:
            browser.close()
            return
        dashboard, script, warm = [], [], []
        for _ in range(args.runs):  # interleaved, so both see the same machine state
            dashboard.append(via_dashboard(page, server, args.image))
            took, url = via_script(page, server, user, args.image)
            script.append(took)
            page.goto("about:blank")
            warm.append(open_running(page, url))
        report(f"click Create → VS Code workbench ({args.image}, median of {args.runs})", [
            ("through the dashboard", median(dashboard), "s"),
            ("script: REST create + events + open URL", median(script), "s"),
            ("ratio dashboard / script", median(dashboard) / median(script), "x"),
            ("for scale: workbench of a running environment", median(warm), "s")])
        held, reloaded = [], []
        browser_client = user.script()
        for _ in range(args.runs):
            held.append(vscode_page_after_ready(server, user, args.image, browser_client, None))
            reloaded.append(vscode_page_after_ready(server, user, args.image, browser_client, 1.0))
        report(f"ready → VS Code page answered (median of {args.runs})", [
            ("the proxy waits for code-server", median(held), "s"),
            ("a Starting page reloading every second", median(reloaded), "s"),
            ("ratio", median(held) / median(reloaded), "x")])
        rows = []
        for path in PAGES:
            first, cached = page_weight(context, server.url + path)
            rows += [(f"{path} first load", first, "KB"), (f"{path} cached", cached, "KB")]
        report("dashboard page weight (transferred)", rows)
        browser.close()


if __name__ == "__main__":
    main()
