"""The only code that runs git: fetch one ref of a repository into a folder, hostile input in mind.

Every fetch is shallow and of one ref; hooks, submodules, LFS, symlinks, prompts and the machine's
own git configuration are off; only the https and ssh transports are allowed (and file when
GIT_ALLOW_LOCAL is set); the URL is passed after `--`; the whole fetch has a time and a size limit.
Credentials travel in the child's environment (never on its command line, never in the URL).
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import shlex
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings

from .validation import is_ssh_url

_SHA_RE = re.compile(r"^[0-9a-fA-F]{4,40}$")
_POLL_SECONDS = 0.1
_OUTPUT_TAIL = 3000


class GitError(Exception):
    """A fetch failed; the message is safe to show the project's owner."""


@dataclass(frozen=True)
class GitCredentials:
    """An https token (`TOKEN` or `USER:TOKEN`) or an ssh deploy key; both optional."""

    token: str = ""
    deploy_key: str = ""


def _dir_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


class GitClient:
    """Runs git for one fetch inside `work` (a private temporary folder the caller removes)."""

    def __init__(self, work: Path, *, credentials: GitCredentials | None = None, log: Callable[[str], None]) -> None:
        self.work = work
        self.repo = work / "repo"
        self.home = work / "home"
        self.credentials = credentials or GitCredentials()
        self.log = log
        self.deadline = time.monotonic() + settings.GIT_CLONE_TIMEOUT
        self.max_bytes = settings.GIT_MAX_REPO_BYTES

    # --- environment ---------------------------------------------------------------------------
    @staticmethod
    def _protocols() -> str:
        return ":".join(["https", "ssh"] + (["file"] if settings.GIT_ALLOW_LOCAL else []))

    def _config(self) -> list[str]:
        pairs = {
            "core.hooksPath": os.devnull,
            "core.symlinks": "false",  # a symlink in the repo could otherwise pull platform files into the egg
            "core.fsmonitor": "false",
            "core.protectNTFS": "true",
            "core.protectHFS": "true",
            "core.askPass": "",
            "credential.helper": "",
            "submodule.recurse": "false",
            "fetch.recurseSubmodules": "false",
            "fetch.fsckObjects": "true",
            "protocol.allow": "never",
            "protocol.https.allow": "always",
            "protocol.ssh.allow": "always",
            "protocol.file.allow": "always" if settings.GIT_ALLOW_LOCAL else "never",
            "protocol.ext.allow": "never",
            "protocol.fd.allow": "never",
            "advice.detachedHead": "false",
            "init.defaultBranch": "main",
        }
        args: list[str] = []
        for key, value in pairs.items():
            args += ["-c", f"{key}={value}"]
        return args

    def _env(self, url: str) -> dict[str, str]:
        self.home.mkdir(mode=0o700, exist_ok=True)
        ssh = ["ssh", "-F", os.devnull, "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=accept-new",
               "-o", f"UserKnownHostsFile={self.home / 'known_hosts'}", "-o", "ConnectTimeout=20"]
        env = {
            "PATH": os.environ.get("PATH", os.defpath),
            "HOME": str(self.home),
            "LANG": "C.UTF-8",
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_LFS_SKIP_SMUDGE": "1",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_ALLOW_PROTOCOL": self._protocols(),
            "GIT_PROTOCOL_FROM_USER": "0",
        }
        if self.credentials.deploy_key and is_ssh_url(url):
            key = self.home / "deploy_key"
            fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(self.credentials.deploy_key.strip().replace("\r\n", "\n") + "\n")
            ssh += ["-o", "IdentitiesOnly=yes", "-i", str(key)]
        env["GIT_SSH_COMMAND"] = shlex.join(ssh)
        if self.credentials.token and url.lower().startswith("https://"):
            user, _, token = self.credentials.token.rpartition(":")
            basic = base64.b64encode(f"{user or 'x-access-token'}:{token}".encode()).decode()
            parts = urlsplit(url)
            # Scoped to the repository's origin, so a redirect elsewhere does not receive it.
            env.update(
                GIT_CONFIG_COUNT="1",
                GIT_CONFIG_KEY_0=f"http.{parts.scheme}://{parts.netloc}/.extraHeader",
                GIT_CONFIG_VALUE_0=f"Authorization: Basic {basic}",
            )
        return env

    # --- running git ---------------------------------------------------------------------------
    def _git(self, *args: str, env: dict[str, str], watch_size: bool = False) -> str:
        """Run git in the repository folder within the fetch's deadline and size limit; returns its output."""
        output_path = self.work / "git-output.txt"
        with open(output_path, "wb") as output:
            proc = subprocess.Popen(
                ["git", *self._config(), *args], cwd=self.repo, env=env, stdin=subprocess.DEVNULL,
                stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
            )
            try:
                while proc.poll() is None:
                    if time.monotonic() > self.deadline:
                        raise GitError(f"git took longer than GIT_CLONE_TIMEOUT ({settings.GIT_CLONE_TIMEOUT:g} s)")
                    if watch_size and _dir_size(self.repo) > self.max_bytes:
                        raise GitError(f"The repository is larger than GIT_MAX_REPO_BYTES ({self.max_bytes} bytes)")
                    time.sleep(_POLL_SECONDS)
            finally:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        text = output_path.read_text(errors="replace")
        if proc.returncode != 0:
            raise GitError(f"git {args[0]} failed (exit {proc.returncode}): {text[-_OUTPUT_TAIL:].strip()}")
        if watch_size and _dir_size(self.repo) > self.max_bytes:
            raise GitError(f"The repository is larger than GIT_MAX_REPO_BYTES ({self.max_bytes} bytes)")
        return text

    def fetch(self, *, url: str, ref: str) -> str:
        """Check `ref` of `url` out into `work/repo`; returns the commit SHA."""
        self.repo.mkdir()
        env = self._env(url)
        self._git("init", "--quiet", "--template=", env=env)
        try:
            self._git("fetch", "--depth", "1", "--no-tags", "--no-recurse-submodules", "--", url, ref,
                      env=env, watch_size=True)
            target = "FETCH_HEAD"
        except GitError as exc:
            if not _SHA_RE.fullmatch(ref) or "couldn't find remote ref" not in str(exc):
                raise
            # An abbreviated commit cannot be fetched by name: fetch branches and tags, then resolve it.
            self.log(f"{ref} is not a branch or tag; fetching the history to find that commit")
            self._git("fetch", "--no-tags", "--no-recurse-submodules", "--", url,
                      "+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*", env=env, watch_size=True)
            target = self._resolve(ref, env)
        self._git("checkout", "--quiet", "--detach", target, "--", env=env, watch_size=True)
        return self._git("rev-parse", "--verify", "HEAD^{commit}", env=env).strip()

    def _resolve(self, ref: str, env: dict[str, str]) -> str:
        try:
            return self._git("rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}", env=env).strip()
        except GitError:
            raise GitError(f"No branch, tag or commit named {ref!r} in the repository") from None
