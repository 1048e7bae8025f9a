import pytest

from dev8.cli.sshconfig import BEGIN, END, build_block, replace_block
from dev8.names import check_env_name, check_secret_name, username_from_email


@pytest.mark.parametrize("name", ["a", "web", "my-env-2", "a" * 32, "0x"])
def test_valid_env_names(name):
    assert check_env_name(name) == name


@pytest.mark.parametrize("name", ["", "-a", "a-", "A", "a_b", "a" * 33, "a\nb", "a%h", "a b", "dev8.x", "é"])
def test_invalid_env_names(name):
    with pytest.raises(ValueError):
        check_env_name(name)


@pytest.mark.parametrize("name", ["1ABC", "A-B", "", "x" * 65, "A B"])
def test_invalid_secret_names(name):
    with pytest.raises(ValueError):
        check_secret_name(name)


def test_username_from_email():
    assert username_from_email("Alice.Smith+dev@example.com") == "alice-smith-dev"
    assert username_from_email("___@x") == "user"


def test_ssh_config_block_and_in_place_update():
    block = build_block(["web", "api"], host="127.0.0.1", port=2222, known_hosts="/home/u/.config/dev8/known_hosts")
    assert "Host dev8.api\n" in block and "Host dev8.web\n" in block and "  Port 2222\n" in block
    original = "Host github.com\n  User git\n"
    once = replace_block(original, block)
    block2 = build_block(["web"], host="127.0.0.1", port=2222, known_hosts="/k")
    twice = replace_block(once + "Host other\n  User x\n", block2)
    assert twice.count(BEGIN) == 1 and twice.count(END) == 1
    assert "dev8.api" not in twice and "Host dev8.web" in twice
    assert twice.startswith(original) and twice.rstrip().endswith("User x")


@pytest.mark.parametrize("name", ["web\nHost *\n  ProxyCommand evil", "web%d", "web ProxyCommand"])
def test_ssh_config_refuses_injection_in_names(name):
    with pytest.raises(ValueError):
        build_block([name], host="127.0.0.1", port=2222, known_hosts="/k")


@pytest.mark.parametrize("host", ["evil\nProxyCommand x", "h%h", "a b"])
def test_ssh_config_refuses_injection_in_host_and_path(host):
    with pytest.raises(ValueError):
        build_block(["web"], host=host, port=2222, known_hosts="/k")
    with pytest.raises(ValueError):
        build_block(["web"], host="127.0.0.1", port=2222, known_hosts=host)


def test_git_option_parsing():
    from dev8.cli.environments import parse_git_option
    assert parse_git_option("github") == {"kind": "github", "host": None, "secret": None, "username": None}
    assert parse_git_option("bitbucket@bb.corp:7990=BB_TOKEN,alice") == {
        "kind": "bitbucket", "host": "bb.corp:7990", "secret": "BB_TOKEN", "username": "alice"}
    with pytest.raises(ValueError):
        parse_git_option("@host")


def test_build_options_validates_everything_before_any_write():
    from dev8.core.environments import build_options
    from dev8.core.errors import Invalid
    options, referenced = build_options(repo="https://ghe.corp/org/app.git", branch="feature/x",
                                        git=[{"kind": "github", "host": "GHE.corp:8443"}], ai={"anthropic": "AK"})
    assert options["git"]["providers"] == [{"kind": "github", "host": "ghe.corp:8443", "secret": "GITHUB_TOKEN",
                                            "username": None}]
    assert referenced == ["GITHUB_TOKEN", "AK"] and options["ai"] == {"anthropic": "AK"}
    for bad in [dict(repo="file:///etc"), dict(repo="https://h/o/r.git", branch="-x"),
                dict(repo="https://h/o/r.git", branch="a..b"), dict(git=[{"kind": "svn"}]),
                dict(git=[{"kind": "github", "host": "evil host"}]), dict(ai={"openai": "X"}),
                dict(git=[{"kind": "github"}, {"kind": "github"}]), dict(branch="main"),
                dict(git=[{"kind": "gitlab", "username": "a b"}])]:
        with pytest.raises(Invalid):
            build_options(**bad)


def test_the_ssh_address_users_are_given() -> None:
    from pydantic import ValidationError

    from dev8.settings import Settings
    assert Settings(ssh_addr="127.0.0.1:2222").ssh_endpoint == ("127.0.0.1", 2222)
    # a wildcard listen address is no address to connect to: the public URL's host is
    assert Settings(ssh_addr="0.0.0.0:2222", public_url="https://dev8.example.com").ssh_endpoint == (
        "dev8.example.com", 2222)
    assert Settings(ssh_addr="[::]:2222", public_url="https://dev8.example.com:8443/").ssh_endpoint == (
        "dev8.example.com", 2222)
    # behind a load balancer (several servers) or a NAT: what the operator says
    assert Settings(ssh_addr="0.0.0.0:2222", ssh_public_addr="ssh.example.com:22").ssh_endpoint == (
        "ssh.example.com", 22)
    with pytest.raises(ValidationError, match="expected HOST:PORT"):
        Settings(ssh_public_addr="ssh.example.com")
