"""Project input validation, webhook signatures and egg inspection: pure functions, no git, no network."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import zipfile

import pytest

from projects import webhooks
from projects.errors import DeployFailed, InvalidSignature
from projects.scrapyproject import egg_settings_module, spider_paths
from projects.validation import deploy_key_error, git_url_error, is_ssh_url, name_error, ref_error, token_error

GOOD_URLS = [
    "https://github.com/acme/shop.git",
    "https://gitlab.example.com:8443/group/sub/shop",
    "ssh://git@github.com/acme/shop.git",
    "ssh://git@[2001:db8::1]:2222/acme/shop.git",
    "git@github.com:acme/shop.git",
    "github.com:acme/shop.git",
]

HOSTILE_URLS = [
    "ext::sh -c touch% /tmp/pwned",
    "ext::sh",
    "fd::17",
    "--upload-pack=touch /tmp/pwned",
    "-oProxyCommand=touch /tmp/pwned",
    "ssh://-oProxyCommand=touch/x",
    "git@-oProxyCommand=x:repo",
    "-u:repo",
    "host:--upload-pack=x",
    "https://github.com/acme/shop.git --upload-pack=x",
    "https://github.com/acme/\nshop.git",
    "https://github.com/acme/shop%0a.git",
    "https://github.com/acme/\x00shop.git",
    "https://user:secret@github.com/acme/shop.git",
    "https://token@github.com/acme/shop.git",
    "http://github.com/acme/shop.git",
    "git://github.com/acme/shop.git",
    "ftp://example.com/shop.git",
    "https:///nohost",
    "https://github.com",
    "file:///srv/repos/shop.git",
    "/srv/repos/shop.git",
    "./shop",
    "../shop",
    "~/shop",
    "shop",
    "",
]


@pytest.mark.parametrize("url", GOOD_URLS)
def test_https_and_ssh_urls_are_accepted(url):
    assert git_url_error(url, allow_local=False) is None


@pytest.mark.parametrize("url", HOSTILE_URLS)
def test_hostile_and_local_urls_are_refused(url):
    assert git_url_error(url, allow_local=False)


def test_local_repositories_only_when_allowed():
    for url in ("/srv/repos/shop.git", "file:///srv/repos/shop.git"):
        assert git_url_error(url, allow_local=False)
        assert git_url_error(url, allow_local=True) is None
    for url in ("./shop", "file://otherhost/srv/shop", "ext::sh", "--upload-pack=x"):
        assert git_url_error(url, allow_local=True)


def test_ssh_urls_are_recognised():
    assert is_ssh_url("git@github.com:acme/shop.git") and is_ssh_url("ssh://git@host/x")
    assert not is_ssh_url("https://github.com/acme/shop") and not is_ssh_url("/srv/shop")


@pytest.mark.parametrize("ref", ["main", "release/1.2", "v1.0.0", "a1b2c3d", "0123456789abcdef0123456789abcdef01234567", "feature_x-2"])
def test_good_refs(ref):
    assert ref_error(ref) is None


@pytest.mark.parametrize(
    "ref",
    ["", "-b", "--upload-pack=x", "+main", "main..other", "a..b", "main\n", "ma in", "main\x07", "HEAD~1", "main^",
     "a:b", "a*", "a?", "a[1]", "a\\b", "@", "a@{1}", "/main", "main/", "main.", "x.lock", ".hidden", "a/.b", "a//b", "x" * 300],
)
def test_bad_refs(ref):
    assert ref_error(ref)


def test_names_tokens_and_keys():
    assert name_error("shop") is None and name_error("My_Shop-2") is None
    for bad in ("", "-shop", "../x", "a b", "a/b", "x" * 65, "shop.v2"):
        assert name_error(bad)
    assert token_error("ghp_abc") is None and token_error("user:glpat-xyz") is None
    assert token_error("a b") and token_error("a\nb")
    key = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n"
    assert deploy_key_error(key) is None
    assert deploy_key_error("ssh-ed25519 AAAA public key")


def test_github_signature_and_gitlab_token():
    body = b'{"ref": "refs/heads/main"}'
    good = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    webhooks.verify(secret="s3cret", headers={"X-Hub-Signature-256": good}, body=body)
    webhooks.verify(secret="s3cret", headers={"X-Gitlab-Token": "s3cret"}, body=body)
    for headers in ({"X-Hub-Signature-256": good.replace("sha256=", "sha256=0")}, {"X-Hub-Signature-256": "sha1=abc"},
                    {"X-Gitlab-Token": "wrong"}, {}):
        with pytest.raises(InvalidSignature):
            webhooks.verify(secret="s3cret", headers=headers, body=body)
    tampered = b'{"ref": "refs/heads/evil"}'
    with pytest.raises(InvalidSignature):
        webhooks.verify(secret="s3cret", headers={"X-Hub-Signature-256": good}, body=tampered)


def test_pushed_branch():
    push = {"ref": "refs/heads/main", "after": "a" * 40}
    assert webhooks.pushed_branch(headers={"X-GitHub-Event": "push"}, data=push) == ("main", "")
    assert webhooks.pushed_branch(headers={"X-Gitlab-Event": "Push Hook"}, data=push) == ("main", "")
    assert webhooks.pushed_branch(headers={"X-GitHub-Event": "ping"}, data={})[0] is None
    assert webhooks.pushed_branch(headers={"X-GitHub-Event": "issues"}, data=push)[0] is None
    assert webhooks.pushed_branch(headers={}, data={"ref": "refs/tags/v1"})[0] is None
    assert webhooks.pushed_branch(headers={}, data={"ref": "refs/heads/main", "deleted": True})[0] is None
    form = b"payload=" + json.dumps(push).encode().replace(b"/", b"%2F")
    assert webhooks.payload(form, "application/x-www-form-urlencoded")["ref"] == "refs/heads/main"
    assert webhooks.payload(b"not json", "application/json") == {}


def _zip(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return buffer.getvalue()


def test_egg_inspection():
    egg = _zip({
        "EGG-INFO/entry_points.txt": "[scrapy]\nsettings = shop.settings\n",
        "shop/spiders/a.py": "import scrapy\nclass A(scrapy.Spider):\n    name = 'alpha'\nclass B(A):\n    name: str = 'beta'\n",
        "shop/spiders/broken.py": "def (:\n",
    })
    assert egg_settings_module(egg) == "shop.settings"
    assert spider_paths(egg) == {"alpha": "shop/spiders/a.py", "beta": "shop/spiders/a.py"}
    for bad in (b"not a zip", _zip({"shop/__init__.py": ""}), _zip({"EGG-INFO/entry_points.txt": "[scrapy]\nsettings = ../x\n"})):
        with pytest.raises(DeployFailed, match="egg"):
            egg_settings_module(bad)


def test_git_credentials_travel_in_the_environment_only(tmp_path):
    import base64
    import stat

    from projects.gitclient import GitClient, GitCredentials

    client = GitClient(tmp_path, credentials=GitCredentials(token="ghp_secret"), log=print)
    env = client._env("https://github.com/acme/shop.git")
    assert env["GIT_CONFIG_KEY_0"] == "http.https://github.com/.extraHeader"  # not sent to a redirect's host
    assert base64.b64decode(env["GIT_CONFIG_VALUE_0"].split()[-1]) == b"x-access-token:ghp_secret"
    assert "ghp_secret" not in " ".join(client._config())
    assert env["GIT_CONFIG_GLOBAL"] and env["GIT_TERMINAL_PROMPT"] == "0" and env["GIT_LFS_SKIP_SMUDGE"] == "1"
    assert "ext" not in env["GIT_ALLOW_PROTOCOL"].split(":")
    key = "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----\n"
    ssh_dir = tmp_path / "ssh"
    ssh_dir.mkdir()
    ssh_env = GitClient(ssh_dir, credentials=GitCredentials(deploy_key=key), log=print)._env("git@github.com:acme/shop.git")
    key_file = ssh_dir / "home" / "deploy_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600 and key_file.read_text() == key
    assert f"-i {key_file}" in ssh_env["GIT_SSH_COMMAND"] and "BatchMode=yes" in ssh_env["GIT_SSH_COMMAND"]
    assert "GIT_CONFIG_KEY_0" not in ssh_env
