"""Validation of what users give a project: its name, git URL, refs and credentials.

Each check returns why a value is refused, or None. Everything here is pure (no git, no network): a
hostile value is refused at the API before a row or a folder exists.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote, urlsplit

MAX_URL_LENGTH = 2048
MAX_REF_LENGTH = 255
MAX_TOKEN_LENGTH = 1000
MAX_DEPLOY_KEY_LENGTH = 16384

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
# git's "<transport>::<address>" form (ext::, fd::, and any remote helper), which runs helper programs.
_TRANSPORT_PREFIX_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*::")
_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
# scp-like ssh: [user@]host:path, with no slash before the colon (git's own rule).
_SCP_RE = re.compile(r"^(?:(?P<user>[^@/:]+)@)?(?P<host>[^@/:\[\]]+|\[[0-9A-Fa-f:.]+\]):(?P<path>.+)$")
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_HOST_RE = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$")
_USER_RE = re.compile(r"^[A-Za-z0-9._~][A-Za-z0-9._~-]{0,63}$")
_REF_FORBIDDEN = set(" ~^:?*[\\")
_PRIVATE_KEY_RE = re.compile(r"^-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----\n[\s\S]+\n-----END [A-Z0-9 ]*PRIVATE KEY-----\n?$")


def _has_control_or_space(value: str) -> bool:
    return any(ord(c) < 32 or ord(c) == 127 or c.isspace() for c in value)


def name_error(name: Any) -> str | None:
    """Why `name` cannot name a project (letters, digits, - and _, starting with a letter or digit)."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        return "Use 1-64 letters, digits, '-' or '_', starting with a letter or digit"
    return None


def version_error(version: Any) -> str | None:
    """Why `version` cannot name a project version."""
    if not isinstance(version, str) or not VERSION_RE.fullmatch(version):
        return "Use 1-100 letters, digits, '.', '-' or '_', starting with a letter or digit"
    return None


def _host_error(host: str | None) -> str | None:
    if not host:
        return "Must include a host"
    if host.startswith("[") and host.endswith("]"):
        return None  # an IPv6 literal; its characters were checked by the scp-like pattern
    if host.startswith("-") or not _HOST_RE.fullmatch(host):
        return "Must include a valid host name"
    return None


def _url_error(url: str, scheme: str, *, allow_local: bool) -> str | None:
    if scheme == "file":
        if not allow_local:
            return "Local repositories are not allowed (set GIT_ALLOW_LOCAL=1 to allow them)"
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            return "A file URL must be file:///absolute/path"
        return None
    if scheme not in ("https", "ssh"):
        return "Only https and ssh git URLs are allowed"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return "Must be a valid URL"
    host = parts.hostname
    if not (host and ":" in host) and (error := _host_error(host)):  # IPv6 literals are checked by urlsplit
        return error
    if "@" in parts.netloc:
        if scheme == "https" or parts.password is not None:
            return "Do not put credentials in the URL: give them as `token` or `deploy_key` (never shown again)"
        if not _USER_RE.fullmatch(parts.username or ""):
            return "Must include a valid user name"
    if parts.path in ("", "/"):
        return "Must include the repository path"
    if parts.query or parts.fragment:
        return "Must not include a query or fragment"
    return None


def git_url_error(url: Any, *, allow_local: bool) -> str | None:
    """Why `url` cannot be cloned: only https and ssh (and local repositories when `allow_local`)."""
    if not isinstance(url, str) or not url:
        return "Must be a git URL"
    if len(url) > MAX_URL_LENGTH:
        return f"At most {MAX_URL_LENGTH} characters"
    if _has_control_or_space(url) or _has_control_or_space(unquote(url)):
        return "Must not contain spaces or control characters (encoded or not)"
    if url.startswith("-"):
        return "Must not start with '-'"
    if _TRANSPORT_PREFIX_RE.match(url):
        return "Transport prefixes such as ext:: and fd:: are not allowed"
    if match := _SCHEME_RE.match(url):
        return _url_error(url, match.group(1).lower(), allow_local=allow_local)
    if url.startswith(("/", ".", "~")):
        if not allow_local:
            return "Local repositories are not allowed (set GIT_ALLOW_LOCAL=1 to allow them)"
        return None if url.startswith("/") else "A local repository must be an absolute path"
    if match := _SCP_RE.fullmatch(url):
        user, host, path = match.group("user"), match.group("host"), match.group("path")
        if user is not None and not _USER_RE.fullmatch(user):
            return "Must include a valid user name"
        if error := _host_error(host):
            return error
        if path.startswith("-"):
            return "The repository path must not start with '-'"
        return None
    return "Must be an https or ssh git URL (https://host/path, ssh://host/path or git@host:path)"


def is_ssh_url(url: str) -> bool:
    """True for ssh:// and scp-like URLs."""
    return url.lower().startswith("ssh://") or (not _SCHEME_RE.match(url) and not url.startswith("/") and bool(_SCP_RE.fullmatch(url)))


def ref_error(ref: Any) -> str | None:
    """Why `ref` cannot be fetched: git's ref-name rules, and nothing that reads as an option."""
    if not isinstance(ref, str) or not ref:
        return "Must be a branch, tag or commit"
    if len(ref) > MAX_REF_LENGTH:
        return f"At most {MAX_REF_LENGTH} characters"
    if _has_control_or_space(ref):
        return "Must not contain spaces or control characters"
    if ref.startswith(("-", "+")):
        return "Must not start with '-' or '+'"
    if ".." in ref or "@{" in ref or ref == "@" or "//" in ref:
        return "Must not contain '..', '@{' or '//'"
    if _REF_FORBIDDEN.intersection(ref):
        return "Must not contain any of ~ ^ : ? * [ \\"
    if ref.startswith("/") or ref.endswith(("/", ".", ".lock")):
        return "Must not start with '/' or end with '/', '.' or '.lock'"
    if any(part.startswith(".") for part in ref.split("/")):
        return "No part may start with '.'"
    return None


def token_error(token: Any) -> str | None:
    """Why `token` cannot be an https access token (`TOKEN` or `USER:TOKEN`)."""
    if not isinstance(token, str) or not token:
        return "Must be a non-empty string"
    if len(token) > MAX_TOKEN_LENGTH or _has_control_or_space(token):
        return f"Must be at most {MAX_TOKEN_LENGTH} characters, without spaces"
    return None


def deploy_key_error(key: Any) -> str | None:
    """Why `key` cannot be an ssh deploy key (a private key in PEM/OpenSSH armour)."""
    if not isinstance(key, str) or len(key) > MAX_DEPLOY_KEY_LENGTH:
        return "Must be an ssh private key"
    if not _PRIVATE_KEY_RE.fullmatch(key.strip().replace("\r\n", "\n") + "\n"):
        return "Must be an ssh private key (-----BEGIN ... PRIVATE KEY----- ... -----END ... PRIVATE KEY-----)"
    return None
