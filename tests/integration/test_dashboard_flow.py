"""The dashboard end to end in real headless Chromium, against a real `dev8 server` with
the Docker runtime and a real git server over HTTPS: first-run setup, login, an SSH key,
the create form with a git token and a repository, progress to ready, the clone in VS
Code's explorer, `git push` from the browser terminal, stop, start, the file still there,
delete. Screenshots of each page go to test-artifacts/."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.support import (
    GIT_HOST,
    GITLAB_HOST,
    PASSWORD,
    Dev8Server,
    User,
    accessibility_problems,
    log_in,
    make_tls_certs,
    restricted_mode_shown,
    set_web_password,
    shot,
    start_git_server,
    trust_questions,
    unique,
    wait_until,
    web_login,
)

TOKEN = "tok-" + "9f8e7d6c5b4a" * 3


@pytest.fixture
def git_world(tmp_path: Path, test_network: str, base_image: str, fullstack_image: str, docker_client):  # type: ignore[no-untyped-def]
    """A fresh server (no users yet) whose environments reach a test git server."""
    ca = make_tls_certs(tmp_path / "tls", GIT_HOST, GITLAB_HOST)
    server = Dev8Server(tmp_path / "server", extra_env={"DEV8_RUNTIME_NETWORK": test_network,
                                                        "DEV8_ENV_CA_BUNDLE": str(ca)}).start()
    git = start_git_server(docker_client, test_network, tmp_path / "tls", {"x-access-token": TOKEN})
    yield server, git
    server.shutdown()
    git.remove(force=True)


def ssh_with(key: Path, server: Dev8Server, env: str, command: str) -> str:
    """``command``'s output over real OpenSSH through the gateway, with ``key`` only."""
    argv = ["ssh", "-p", str(server.ssh_port), "-i", str(key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", f"{env}@127.0.0.1", command]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60).stdout.strip()


def terminal_text(page) -> str:  # type: ignore[no-untyped-def]
    return page.inner_text(".xterm-rows")


def run_in_terminal(page, command: str, marker: str) -> str:  # type: ignore[no-untyped-def]
    page.click("#terminal")
    page.keyboard.type(command + "\n")
    wait_until(lambda: marker in terminal_text(page), timeout=60, what=f"{marker!r} in the browser terminal")
    return terminal_text(page)


def test_setup_login_key_create_clone_push_stop_start_delete(page, git_world, tmp_path: Path):  # type: ignore[no-untyped-def]
    server, git = git_world
    url = server.url
    # first-run setup from the one-time link the server printed
    setup_link = re.search(r"(http://\S+/setup\?token=\S+)", server.log()).group(1)  # type: ignore[union-attr]
    page.goto(setup_link)
    shot(page, "flow-1-setup")
    assert accessibility_problems(page) == []
    page.fill("input[name=email]", "admin@example.com")
    page.fill("input[name=password]", PASSWORD)
    page.click("button")
    # setup logs the new admin in: the dashboard opens, then log out to try the login form
    page.click("text=Open the dashboard")
    page.wait_for_selector("#empty:not([hidden])")
    page.click("text=Log out")
    page.wait_for_url(url + "/login")
    # login: a wrong password gets the one generic message, and the email stays filled in
    page.fill("input[name=email]", "admin@example.com")
    page.fill("input[name=password]", "not the password")
    page.click("button")
    assert page.inner_text("[role=alert]") == "Wrong email or password."
    assert page.input_value("input[name=email]") == "admin@example.com"
    assert page.evaluate("document.activeElement.name") == "password"
    shot(page, "flow-2-login")
    assert accessibility_problems(page) == []
    page.set_viewport_size({"width": 390, "height": 844})
    assert accessibility_problems(page) == [] and page.evaluate("document.documentElement.scrollWidth") <= 390
    page.set_viewport_size({"width": 1280, "height": 800})
    page.console_errors.clear()  # Chromium logs that 401 page; from here on the flow must log nothing
    page.fill("input[name=password]", PASSWORD)
    page.click("button")
    page.wait_for_url(url + "/")
    page.wait_for_selector("#empty:not([hidden])")
    shot(page, "flow-3-environments-empty")

    # an SSH key, pasted in settings
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "laptop", "-f", str(key)], check=True)
    page.click("nav >> text=Settings")
    page.fill("#key-paste", key.with_suffix(".pub").read_text())
    page.click("#key-add")
    page.wait_for_selector("#key-list li[data-key='laptop']")
    shot(page, "flow-4-settings")

    # the create form: a bad name is flagged while typing, then a git token and the repository
    name = unique("e2e")
    page.click("nav >> text=New environment")
    page.fill("#f-name", "Not_Valid")
    page.wait_for_selector("[data-error-for=name]:not([hidden])")
    assert "invalid environment name" in page.inner_text("[data-error-for=name]")
    page.fill("#f-name", name)
    page.wait_for_selector("[data-error-for=name]", state="hidden")
    page.fill("#f-image", "dev8/fullstack:latest")
    page.fill("#f-repo", f"https://{GIT_HOST}:8443/org/app.git")
    page.click("#add-git")
    page.fill(".git-row .host", f"{GIT_HOST}:8443")
    assert page.input_value(".git-row .choice") == "__new__"  # no saved secret yet: type the token
    assert page.input_value(".git-row .save-as") == "GITHUB_TOKEN_GIT_CORP_TEST_8443"
    page.fill(".git-row .value", TOKEN)
    shot(page, "flow-5-create-form")
    page.click("#create-button")
    page.wait_for_selector("#progress:not([hidden]) #steps li")
    shot(page, "flow-6-create-progress")
    page.wait_for_url(url + f"/environments/{name}", timeout=300_000)
    steps_seen = server.log()  # the progress view left for the environment page only at `ready`
    page.wait_for_selector("body[data-state=running]")
    page.wait_for_selector("#services li[data-service]", timeout=60_000)
    assert page.input_value("#ssh-command") == f"ssh -p {server.ssh_port} {name}@127.0.0.1"
    assert "GITHUB_TOKEN_GIT_CORP_TEST_8443" in page.inner_text("[data-detail=Secrets]")
    assert TOKEN not in page.content()
    page.wait_for_selector("#logs:has-text('Server listening on')")  # the services' output
    shot(page, "flow-7-environment")
    # a listening port's sharing level, changed from the page (code-server's own port is VS
    # Code, not a preview: not listed)
    ssh_with(key, server, name, "(nohup python3 -m http.server 8000 >/dev/null 2>&1 &); echo started")
    page.wait_for_selector("#ports tr[data-port='8000']", timeout=60_000)
    assert page.locator("#ports tr[data-port='13337']").count() == 0
    page.select_option("#ports tr[data-port='8000'] select", "authenticated")
    api = server.api(server.cli("admin", "create-token", "admin@example.com").stdout.strip())
    wait_until(lambda: api.get(f"/environments/{name}/ports").json()["shares"] == {"8000": "authenticated"},
               timeout=20, what="the sharing level saved")
    assert "Traceback" not in steps_seen

    # VS Code opens the clone: the repository's README is in the explorer
    with page.context.expect_page() as opened:
        page.click("#open-vscode")
    vscode = opened.value
    asked = trust_questions(vscode)
    vscode.wait_for_selector(".monaco-workbench", timeout=120_000)
    vscode.wait_for_selector(".explorer-folders-view :text('README.md')", timeout=60_000)
    vscode.click(".explorer-folders-view :text('README.md')")  # the repository it cloned: trusted, no question
    vscode.wait_for_selector(".monaco-editor .view-lines", timeout=60_000)
    shot(vscode, "flow-8-vscode")
    assert asked == [] and not restricted_mode_shown(vscode)
    vscode.close()

    # the browser terminal: commit and push with the token from the form, no prompt
    with page.context.expect_page() as opened:
        page.click("#open-terminal")
    term = opened.value
    term.wait_for_selector("#status:text('connected')")
    run_in_terminal(term, "cd ~/workspace/app && echo from-the-dashboard > E2E.md && git add E2E.md && "
                          "git commit -qm 'pushed from the browser' && git push -q origin HEAD && echo PUSH-$((40+2))",
                    "PUSH-42")
    shot(term, "flow-9-terminal-push")
    term.close()
    pushed = git.exec_run("git -C /srv/git/org/app.git log --format=%s -1 main").output.decode().strip()
    assert pushed == "pushed from the browser"
    # the pasted key opens the environment over real SSH
    assert ssh_with(key, server, name, "cat ~/workspace/app/E2E.md") == "from-the-dashboard"

    # stop, start: the file is still there
    page.click("#actions button:text('Stop')")
    page.wait_for_selector("body[data-state=stopped]", timeout=120_000)
    shot(page, "flow-10-stopped")
    page.click("#actions button:text('Start')")
    page.wait_for_selector("body[data-state=running]", timeout=120_000)
    with page.context.expect_page() as opened:
        page.click("#open-terminal")
    term = opened.value
    term.wait_for_selector("#status:text('connected')")
    run_in_terminal(term, "cat ~/workspace/app/E2E.md; echo END-$((1+1))", "END-2")
    assert "from-the-dashboard" in terminal_text(term)
    term.close()

    # delete, from the environment page: the dialog names the work that is not pushed
    ssh_with(key, server, name, "echo wip > ~/workspace/app/wip.txt")
    page.click("#actions button:text('Delete')")
    assert f"Delete {name}?" in page.inner_text("dialog#confirm-delete")
    page.wait_for_selector("dialog#confirm-delete [data-work]:not([hidden])")
    assert "workspace/app: 1 changed file" in page.inner_text("dialog#confirm-delete [data-work]")
    page.click("dialog#confirm-delete button[value=delete]")
    page.wait_for_url(url + "/")
    page.wait_for_selector(f"tr[data-env='{name}']", state="detached", timeout=60_000)
    shot(page, "flow-11-deleted")
    assert page.console_errors == [], page.console_errors


def test_other_users_environment_url_is_a_404_page_and_a_generated_key_opens_ssh(  # type: ignore[no-untyped-def]
        page, server: Dev8Server, alice: User, bob: User, tmp_path: Path):
    set_web_password(alice)
    set_web_password(bob)
    name = unique("p")
    alice.cli("create", name)
    log_in(page, server, bob, "/")
    for path in (f"/environments/{name}", "/environments/no-such-env", "/admin"):
        response = page.goto(server.url + path)
        assert response is not None and response.status == 404
        assert page.inner_text("h1") == "Not found"
    shot(page, "flow-404")
    # alice sees hers, and a key pair generated in her settings is downloadable and works
    page.context.clear_cookies()
    log_in(page, server, alice, f"/environments/{name}")
    assert page.inner_text("h1").startswith(name)
    page.goto(server.url + "/settings")
    page.click("#key-generate")
    page.wait_for_selector("#key-generated:not([hidden])")
    shown = page.inner_text("#key-private")
    with page.expect_download() as download:
        page.click("#key-download")
    key = tmp_path / "downloaded_key"
    download.value.save_as(key)
    assert key.read_text().strip() == shown.strip() and "BEGIN OPENSSH PRIVATE KEY" in shown
    key.chmod(0o600)
    shot(page, "flow-generated-key")
    assert ssh_with(key, server, name, "echo via-generated-$((2*21))") == "via-generated-42"
    page.reload()  # shown once: a reload shows the key's name, never the private half
    page.wait_for_selector("#key-list li[data-key='generated in the browser']")
    assert "PRIVATE KEY" not in page.content()
    # secrets: set, replace, delete; the value is never shown back
    page.fill("#secret-name", "NPM_TOKEN")
    page.fill("#secret-value", "npm-secret-value-1")
    page.click("#secret-form button")
    page.wait_for_selector("#secret-list tr[data-secret='NPM_TOKEN']")
    page.click("#secret-list tr[data-secret='NPM_TOKEN'] button:text('Replace')")
    assert page.input_value("#secret-name") == "NPM_TOKEN" and page.input_value("#secret-value") == ""
    page.fill("#secret-value", "npm-secret-value-2")
    page.click("#secret-form button")
    wait_until(lambda: page.input_value("#secret-value") == "", timeout=10, what="the form reset after saving")
    assert "npm-secret-value" not in page.content()
    assert [s["name"] for s in alice.http().get("/secrets").json()] == ["NPM_TOKEN"]
    page.once("dialog", lambda d: d.accept())
    page.click("#secret-list tr[data-secret='NPM_TOKEN'] button:text('Delete')")
    page.wait_for_selector("#secret-list tr[data-secret='NPM_TOKEN']", state="detached")
    assert alice.http().get("/secrets").json() == []
    # API tokens: created with a name and expiry, shown once, working, revoked
    page.fill("#token-name", "ci runner")
    page.select_option("#token-expiry", "7d")
    page.click("#token-form button")
    page.wait_for_selector("#token-created:not([hidden])")
    token = page.inner_text("#token-value").strip()
    api = server.api(token)
    assert api.get("/me").json()["email"] == alice.email
    shot(page, "flow-settings-token")
    page.click("#token-list tr[data-token='ci runner'] button:text('Revoke')")
    page.wait_for_selector("#token-list tr[data-token='ci runner']", state="detached")
    assert api.get("/me").status_code == 401
    assert [e for e in page.console_errors if "404" not in e] == []  # the 404 pages above log their status


PAGES = ["/", "/new", "/prebuilds", "/settings", "/admin"]


def test_every_page_fits_a_phone_and_creating_works_from_the_keyboard(page, server: Dev8Server, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                                     registry):
    server.cli("admin", "create-user", "boss@example.com", "--admin", "--password-stdin", input=PASSWORD + "\n")
    boss = User.__new__(User)  # only the email is needed to log in through the form
    boss.email = "boss@example.com"
    log_in(page, server, boss, "/new")
    # keyboard only: the name field has focus, Enter submits, the progress leads to the page
    name = unique("k")
    assert page.evaluate("document.activeElement.id") == "f-name"
    page.keyboard.type(name)
    page.keyboard.press("Enter")
    page.wait_for_url(server.url + f"/environments/{name}", timeout=120_000)
    page.wait_for_selector("body[data-state=running]")
    # what it uses, from inside it: memory against its limit, its home's size
    page.wait_for_selector("[data-resource=Memory]:has-text(' of ')", timeout=30_000)
    assert re.fullmatch(r"\d+(\.\d)? [KMG]iB, \d+(\.\d)? [KMGT]iB free", page.inner_text("[data-resource=Home]"))
    # every control is reachable with Tab: walk the page until the Delete button has focus
    reached = []
    for _ in range(40):
        page.keyboard.press("Tab")
        reached.append(page.evaluate("document.activeElement.textContent.trim()"))
        if reached[-1] == "Delete":
            break
    assert {"Skip to content", "Environments", "Terminal", "Stop", "Delete"} <= set(reached), reached
    assert "Open VS Code" not in reached  # dev8/base has no VS Code: not offered
    for _ in range(2):  # the page asks for the environment every 2 s; the focus stays put
        with page.expect_response(lambda r: r.url.endswith(f"/api/v1/environments/{name}")):
            pass
    assert page.evaluate("document.activeElement.dataset.key") == "delete"
    page.keyboard.press("Enter")  # Delete opens the confirmation; Escape closes it, nothing deleted
    assert page.locator("dialog#confirm-delete").is_visible()
    page.keyboard.press("Escape")
    assert not page.locator("dialog#confirm-delete").is_visible()
    page.click("#actions button:text('Reconfigure')")
    page.wait_for_selector("#events li:has-text('reconfigure requested')")
    # 390 px wide: nothing is wider than the screen
    page.set_viewport_size({"width": 390, "height": 844})
    for path in [*PAGES, f"/environments/{name}"]:
        page.goto(server.url + path)
        page.wait_for_load_state("networkidle")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"{path} is {width}px wide on a 390px screen"
        header = page.evaluate("document.querySelector('header.top').getBoundingClientRect().height")
        assert header <= 90, f"{path}: the header takes {header}px of an 844px screen"
        nav = page.evaluate("[...document.querySelectorAll('header nav a')].map(a => a.getBoundingClientRect().right)")
        assert max(nav) <= 390, f"{path}: the menu runs off the screen ({nav})"
        # tables become cards: every cell with something in it says which column it is
        unlabelled = page.evaluate("""[...document.querySelectorAll('tbody td')].filter(td =>
            !td.dataset.label && !td.querySelector('button, a, select') && td.textContent.trim()).map(td => td.textContent)""")
        assert unlabelled == [], f"{path}: cells without a label: {unlabelled}"
        problems = accessibility_problems(page)
        page.set_viewport_size({"width": 1280, "height": 800})  # axe-core at both widths
        problems += accessibility_problems(page)
        page.set_viewport_size({"width": 390, "height": 844})
        assert problems == [], f"{path}: {problems}"
        shot(page, "narrow" + (path.replace("/", "-") if path != "/" else "-environments"))
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(server.url + "/admin")
    page.wait_for_selector("#audit tr[data-action='env.create']")
    assert name in page.inner_text("#all-envs")
    # create a user, who can log in; disable them, and their session stops working
    page.fill("#user-email", "intern@example.com")
    page.fill("#user-password", PASSWORD)
    page.click("#user-form button")
    row = "#users tr[data-user='intern@example.com']"
    page.wait_for_selector(row)
    intern = web_login(server, "intern@example.com")
    assert intern.get("/api/v1/me").status_code == 200
    page.click(f"{row} button:text('Disable')")
    page.wait_for_selector(f"{row} .state:text('disabled')")
    assert intern.get("/api/v1/me").status_code == 401
    for action in ("admin.user.create", "admin.user.disable", "login"):
        page.wait_for_selector(f"#audit tr[data-action='{action}']")
    # an image built again from the page (its steps come from the cache here): progress, then done
    image = "#images tr[data-image='dev8/base:latest']"
    assert page.inner_text(f"{image} button") == "Rebuild"
    page.click(f"{image} button")
    page.wait_for_selector(f"{image}[data-job=done]", timeout=600_000)
    assert page.inner_text(f"{image} td.progress").startswith("done")
    # pushed from the page to a registry (a real one on loopback), progress per layer, then its name
    page.select_option("#push-image", "dev8/base:latest")
    page.fill("#push-registry", f"{registry.host}/from-page")
    page.click("#push-form button")
    page.wait_for_selector("#push-progress[data-job=done]", timeout=300_000)
    pushed = f"{registry.host}/from-page/dev8/base:latest"
    assert page.inner_text("#push-progress") == f"pushed {pushed}"
    from dev8.runtimes.registry import has_manifest, parse_ref
    assert has_manifest(parse_ref(pushed))
    shot(page, "admin")
    assert page.console_errors == [], page.console_errors
    page.fill("#push-registry", "https://not-a-registry-name")  # refused next to the form (the 422 is logged)
    page.click("#push-form button")
    page.wait_for_selector("#push-error:not([hidden])")
    assert "invalid registry" in page.inner_text("#push-error")


def test_creating_from_a_template_card_greys_out_what_it_fixes(page, server: Dev8Server, tmp_path: Path):  # type: ignore[no-untyped-def]
    server.cli("admin", "create-user", "lead@example.com", "--admin", "--password-stdin", input=PASSWORD + "\n")
    lead = User.__new__(User)  # only the email is needed to log in through the form
    lead.email = "lead@example.com"
    token = server.cli("admin", "create-token", "lead@example.com").stdout.strip()
    saved = server.api(token).put("/templates/small-box", json={
        "description": "A small box for scripts", "image": "dev8/base:latest", "cpus": 0.5, "memory": "512m",
        "env": {"TEAM": "platform"}, "editable": ["memory"]})
    assert saved.status_code == 200, saved.text
    log_in(page, server, lead, "/new")
    # the default image says what it offers and that it is ready (the tests build it first)
    page.wait_for_selector("#image-status[data-status=ready]")
    assert "ready: starts in seconds" in page.inner_text("#image-status")
    page.wait_for_selector("#template-section:not([hidden])")
    page.click("label.template-card[data-template='small-box']")
    assert page.is_disabled("#f-image") and page.is_disabled("#f-cpus") and not page.is_disabled("#f-memory")
    assert page.get_attribute("#f-image", "placeholder") == "dev8/base:latest"
    assert "variables TEAM" in page.inner_text("#template-note")
    page.click("#create button[type=submit]")  # no name yet: said in the form's own words
    page.wait_for_selector("[data-error-for=name]:has-text('Name is required')")
    assert page.evaluate("document.activeElement.id") == "f-name"
    name = unique("c")
    page.fill("#f-name", name)
    page.fill("#f-memory", "768m")
    shot(page, "create-from-template")
    page.click("#create button[type=submit]")
    page.wait_for_url(server.url + f"/environments/{name}", timeout=120_000)
    env = server.api(token).get(f"/environments/{name}").json()
    assert (env["template"], env["cpus"], env["memory"], env["env"]) == ("small-box", 0.5, "768m", {"TEAM": "platform"})
    assert page.console_errors == [], page.console_errors


def test_an_environment_in_error_offers_retry_edit_and_its_raw_detail(page, tmp_path: Path):  # type: ignore[no-untyped-def]
    from tests.support import fake_server, set_web_password
    with fake_server(tmp_path / "fake") as srv:
        gil = User(srv, "gil@example.com", tmp_path / "gil")
        set_web_password(gil)
        name = unique("r")
        gil.cli("create", name, "--image", "vanishing/app:1", check=False)  # gone after the create checked it
        wait_until(lambda: gil.http().get(f"/environments/{name}").json()["state"] == "error", timeout=30,
                   what="the error")
        log_in(page, srv, gil, f"/environments/{name}")
        page.wait_for_selector("body[data-state=error]")
        assert page.locator("#actions button:text('Start')").count() == 0
        page.click("#actions button:text('Retry')")
        page.wait_for_selector("#events li:has-text('restart requested')")
        assert "does not exist" in page.inner_text("#failure-text")
        assert not page.is_visible("#failure-detail")  # dev8's own sentence: nothing more to show
        # Edit: a wrong image is refused next to its field, the right one starts it
        page.click("#actions button:text('Edit')")
        assert page.input_value("#e-image") == "vanishing/app:1"
        page.fill("#e-image", "missing/app:1")
        page.click("#edit-save")
        page.wait_for_selector("#e-image-error:has-text('does not exist')")
        assert page.evaluate("document.activeElement.id") == "e-image"
        page.fill("#e-image", "dev8/base:latest")
        page.fill("#e-memory", "768m")
        shot(page, "environment-edit")
        page.click("#edit-save")
        page.wait_for_selector("body[data-state=running]", timeout=60_000)
        assert page.is_hidden("#failure")
        assert page.inner_text("[data-detail=Image]") == "dev8/base:latest"
        assert page.inner_text("[data-detail=Memory]") == "768m"
        # a raw failure: the sentence up top, the runtime's words behind "Show details"
        other = unique("r")
        gil.cli("create", other, "--image", "nospace/app:1", check=False)
        page.goto(srv.url + f"/environments/{other}")
        page.wait_for_selector("body[data-state=error]", timeout=30_000)
        assert "out of disk space" in page.inner_text("#failure-text")
        assert not page.is_visible("#failure-raw")
        page.click("#failure-detail summary")
        assert "No space left on device" in page.inner_text("#failure-raw")
        shot(page, "environment-error-detail")
        unexpected = [e for e in page.console_errors if "status of 422" not in e]  # the refused image: expected
        assert unexpected == [], page.console_errors


def test_long_names_and_a_start_that_keeps_failing_fit_at_1280_px_with_every_action(page, tmp_path: Path):  # type: ignore[no-untyped-def]
    """A 32-character name (the form's maximum) and a long repository URL scroll nothing
    sideways; a failure's reason is text on the list (no tooltip on a touch screen); a start
    dev8 keeps retrying offers Stop, with the last try's failure shown."""
    from tests.support import fake_server, set_web_password
    with fake_server(tmp_path / "fake") as srv:
        hal = User(srv, "hal@example.com", tmp_path / "hal")
        set_web_password(hal)
        long_name = ("w" + unique("")[:8] + "x" * 32)[:32]
        hal.cli("create", long_name, "--repo", "https://git.example.invalid/" + "very-long-group/" * 6 + "app.git")
        failing = ("f" + unique("")[:8] + "y" * 32)[:32]
        hal.cli("create", failing, "--image", "slownospace/app:1", check=False)
        log_in(page, srv, hal, "/")
        row = f"tr[data-env='{failing}']"
        page.wait_for_selector(f"{row} .status-reason:has-text('image failed')", timeout=60_000)
        assert page.evaluate("document.documentElement.scrollWidth") <= 1280
        rights = page.evaluate("[...document.querySelectorAll('#envs button, #envs a.button')]"
                               ".map(b => b.getBoundingClientRect().right)")
        assert rights and max(rights) <= 1280, rights
        shot(page, "environments-long-names")
        # while dev8 tries again, Stop gives the start up
        page.wait_for_selector(f"{row}[data-state='starting'] .status-reason:has-text('trying again')",
                               timeout=60_000)
        page.click(f"{row} button:text('Stop')")
        page.wait_for_selector(f"{row}[data-state='stopped']", timeout=60_000)
        # the environment page: the SSH command box fits
        page.goto(f"{srv.url}/environments/{long_name}")
        page.wait_for_selector("body[data-state=running]")
        box = page.evaluate("document.getElementById('ssh-command').getBoundingClientRect().right")
        assert box <= 1280 and page.evaluate("document.documentElement.scrollWidth") <= 1280, box
        assert page.console_errors == []
