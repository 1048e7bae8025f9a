from dev8.apphosts import app_url, loopback_app_domain, parse_app_host, parse_port

W = "dev8.localhost:7080"


def test_app_hosts_parse_to_app_port_and_every_reading_of_the_names():
    t = parse_app_host("VSCODE--web--alice.dev8.localhost:7080", W)
    assert t is not None and (t.app, t.port, t.is_port, t.candidates) == ("vscode", 13337, False, (("web", "alice"),))
    t = parse_app_host("3000--my--app--bob.dev8.localhost:7080", W)
    assert t is not None and t.port == 3000 and t.is_port
    assert t.candidates == (("my", "app--bob"), ("my--app", "bob"))


def test_anything_else_is_not_an_app_host():
    for host in ("dev8.localhost:7080", "vscode--web--alice.dev8.localhost:7081", "vscode--web--alice.evil.test",
                 "a.vscode--web--alice.dev8.localhost:7080", "0x1F90--web--alice.dev8.localhost:7080",
                 "70000--web--alice.dev8.localhost:7080", "terminal--web--alice.dev8.localhost:7080",
                 "vscode--web.dev8.localhost:7080", "vscode--web--.dev8.localhost:7080", "evil.com#.dev8.localhost:7080"):
        assert parse_app_host(host, W) is None, host
    assert parse_app_host("vscode--web--alice.dev8.localhost:7080", None) is None


def test_ports_are_decimal_1_to_65535_only():
    assert [parse_port(p) for p in ("1", "65535", "0", "65536", "08080", "8080@evil", "0x1F90", " 80", "")] == \
        [1, 65535, None, None, None, None, None, None, None]


def test_app_urls_follow_the_mode():
    assert app_url("http://h:1", None, "vscode", "e", "u") == "http://h:1/@u/e/apps/vscode/"
    assert app_url("http://h:1", None, 3000, "e", "u") == "http://h:1/@u/e/ports/3000/"
    assert app_url("https://h", "apps.h", 3000, "e", "u") == "https://3000--e--u.apps.h/"


def test_without_a_wildcard_domain_loopback_dev8s_apps_live_under_localhost():
    assert loopback_app_domain("http://127.0.0.1:7080") == "localhost:7080"
    assert loopback_app_domain("http://[::1]:9000") == "localhost:9000"
    assert loopback_app_domain("http://localhost") == "localhost"
    # below dev8's own name, so that dev8's host is never read as an app host
    assert loopback_app_domain("http://dev8.localhost:7080") == "dev8.localhost:7080"
    assert parse_app_host("dev8.localhost:7080", loopback_app_domain("http://dev8.localhost:7080")) is None
    for elsewhere in ("http://10.0.0.5:7080", "https://dev8.example.com", "http://0.0.0.0:7080",
                      "http://localhost.example.com", "http://127.0.0.1.nip.io"):
        assert loopback_app_domain(elsewhere) is None, elsewhere
