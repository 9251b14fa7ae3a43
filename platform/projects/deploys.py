"""Deploys: a git ref or an uploaded egg becomes the project's current version, or fails leaving it as it was.

A git deploy fetches the ref, finds scrapy.cfg, builds an egg of the project package and hands it to
`deploy_egg`, which is also the whole path of an uploaded egg: list its spiders, keep the egg, upload
it to every enabled node, then (and only then) make it current and register its spiders.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from nodes.models import Node

from .credentials import CredentialsUnreadable
from .eggs import ReservedPackage, build_egg, with_platform_modules
from .environments import (
    egg_lock,
    ensure_environment,
    find_requirements,
    list_spiders_in_env,
    lock_sha256,
    prune_environments,
    resolve_lock,
    with_lock,
)
from .errors import DeployFailed
from .gitclient import GitClient, GitCredentials, GitError
from .models import Deploy, Project, ProjectVersion, Source, Spider, Trigger
from .scrapyproject import egg_settings_module, find_project, list_spiders, spider_paths
from .validation import git_url_error, ref_error, version_error
from .versions import delete_egg, egg_path, publish, sha256, store_egg

logger = logging.getLogger(__name__)

MAX_LOG_CHARS = 200_000


class DeployLog:
    """A deploy's readable log, saved on the record as it grows and echoed to `emit` (a command's output)."""

    def __init__(self, deploy: Deploy, emit: Callable[[str], None] | None = None) -> None:
        self.deploy = deploy
        self.emit = emit
        self.lines: list[str] = []
        self.start = time.monotonic()

    def __call__(self, message: str, *, indent: bool = False) -> None:
        stamp = f"[{time.monotonic() - self.start:6.1f}s]"
        for line in message.rstrip().splitlines() or [""]:
            text = f"{stamp}   | {line}" if indent else f"{stamp} {line}"
            self.lines.append(text)
            if self.emit:
                self.emit(text)
        Deploy.objects.filter(pk=self.deploy.pk).update(log=self.text)

    @property
    def text(self) -> str:
        text = "\n".join(self.lines)
        return text if len(text) <= MAX_LOG_CHARS else "[earlier lines cut]\n" + text[-MAX_LOG_CHARS:]


def _work_dir() -> Path:
    base = Path(settings.DEPLOY_TMP_DIR)
    base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="deploy-", dir=base))


def _fail(deploy: Deploy, log: DeployLog, exc: DeployFailed) -> None:
    if exc.detail:
        log(exc.detail, indent=True)
    log(f"Deploy failed: {exc.reason}")
    log("The current version is unchanged")
    deploy.fail(error=exc.reason, log=log.text)


def _run_guarded(deploy: Deploy, log: DeployLog, body: Callable[[Path], None]) -> Deploy:
    """Run `body` in a private temporary folder (always removed); any failure fails the deploy."""
    work = _work_dir()
    try:
        body(work)
    except DeployFailed as exc:
        _fail(deploy, log, exc)
    except SoftTimeLimitExceeded:
        _fail(deploy, log, DeployFailed(f"The deploy took longer than DEPLOY_TIME_LIMIT ({settings.DEPLOY_TIME_LIMIT} s)"))
    except Exception as exc:
        logger.exception("Deploy %s failed unexpectedly", deploy.pk)
        _fail(deploy, log, DeployFailed(f"Internal error: {exc.__class__.__name__}: {exc}"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return deploy


def deploy_egg(
    *,
    project: Project,
    version: str,
    egg_bytes: bytes,
    source: str = Source.UPLOAD,
    log: Callable[[str], None] | None = None,
    requested_by=None,
    trigger: str = Trigger.UPLOAD,
) -> Deploy:
    """Make an uploaded egg a new version of `project`, as a git deploy does; returns the finished deploy.

    Never raises for a bad egg: the deploy comes back `failed` with the reason in `error` and `log`.
    """
    deploy = Deploy.objects.create(
        project=project, source=source, trigger=trigger, ref=version, requested_by=requested_by, started_at=timezone.now()
    )
    dlog = DeployLog(deploy, emit=log)
    dlog(f"Deploying an uploaded egg of {len(egg_bytes)} bytes as version {version}")
    return _run_guarded(
        deploy, dlog, lambda work: install_egg(deploy=deploy, version=version, egg=egg_bytes, log=dlog, work=work)
    )


def run_deploy(*, deploy: Deploy, emit: Callable[[str], None] | None = None) -> Deploy:
    """Build and deploy a git deploy's ref; returns the deploy, finished (or as it was if another worker has it)."""
    if not deploy.claim():
        return deploy
    project = deploy.project
    log = DeployLog(deploy, emit=emit)

    def body(work: Path) -> None:
        log(f"Deploying {deploy.ref} of {project.git_url}")
        if error := git_url_error(project.git_url, allow_local=settings.GIT_ALLOW_LOCAL):
            raise DeployFailed(f"The git URL is refused: {error}")
        if error := ref_error(deploy.ref):
            raise DeployFailed(f"The ref is refused: {error}")
        try:
            credentials = GitCredentials(token=project.token, deploy_key=project.deploy_key)
        except CredentialsUnreadable as exc:
            raise DeployFailed(str(exc)) from None
        try:
            commit = GitClient(work, credentials=credentials, log=log).fetch(url=project.git_url, ref=deploy.ref)
        except GitError as exc:
            raise DeployFailed(f"Could not fetch {deploy.ref}", detail=str(exc)) from None
        Deploy.objects.filter(pk=deploy.pk).update(commit=commit)
        deploy.commit = commit
        log(f"Checked out commit {commit}")
        layout = find_project(work / "repo")
        log(f"Found {layout.prefix}scrapy.cfg: settings {layout.settings_module}, package {layout.prefix}{layout.package_dir.name}/")
        egg = build_egg(layout.package_dir, name=project.scrapyd_name, settings_module=layout.settings_module, data_files=True)
        log(f"Built the egg ({len(egg.data)} bytes)")
        data = egg.data
        if requirements := find_requirements(work / "repo", layout.root):
            data = with_lock(data, resolve_lock(requirements, work=work, log=log))
        else:
            log("No requirements.txt or pyproject dependencies: the version runs on the nodes' packages")
        install_egg(deploy=deploy, version=commit, egg=data, log=log, work=work, path_prefix=layout.prefix, commit=commit)

    return _run_guarded(deploy, log, body)


def install_egg(
    *, deploy: Deploy, version: str, egg: bytes, log: DeployLog, work: Path, path_prefix: str = "", commit: str = ""
) -> ProjectVersion:
    """List, store, upload and make current; raises DeployFailed leaving the current version as it was."""
    project = deploy.project
    if error := version_error(version):
        raise DeployFailed(f"The version {version!r} is refused: {error}")
    if len(egg) > settings.EGG_MAX_BYTES:
        raise DeployFailed(f"The egg is larger than EGG_MAX_BYTES ({settings.EGG_MAX_BYTES} bytes)")
    settings_module = egg_settings_module(egg)
    digest = sha256(egg)
    existing = ProjectVersion.objects.filter(project=project, version=version).first()
    if existing and existing.egg_sha256 != digest and deploy.source == Source.UPLOAD:
        raise DeployFailed(f"Version {version} already exists with other content: upload it as a new version")
    try:
        egg = with_platform_modules(egg)
    except (ReservedPackage, zipfile.BadZipFile) as exc:
        raise DeployFailed(f"The egg cannot be deployed: {exc}") from None
    egg_file = work / "project.egg"
    egg_file.write_bytes(egg)
    lock = egg_lock(egg) or ""
    if lock:
        # Built here as on a node, to list the spiders with their dependencies before any node sees them.
        ensure_environment(egg_file, work=work, log=log)
        log(f"Listing spiders (scrapy list in the environment, settings {settings_module})")
        names = list_spiders_in_env(egg_file, settings_module=settings_module, work=work, timeout=settings.DEPLOY_LIST_TIMEOUT)
    else:
        log(f"Listing spiders (scrapy list with settings {settings_module})")
        names = list_spiders(egg_file, settings_module=settings_module, work=work, timeout=settings.DEPLOY_LIST_TIMEOUT)
    if not names:
        raise DeployFailed("`scrapy list` found no spiders in the project")
    log(f"Spiders: {', '.join(names)}")
    paths = spider_paths(egg)
    target = egg_path(project, version)
    had_file = target.exists()
    store_egg(target, egg)
    try:
        publication = publish(project=project, version=version, egg=egg, log=log, lock=lock)
    except DeployFailed:
        if not had_file:
            delete_egg(target)
        raise
    with transaction.atomic():
        Project.objects.select_for_update().filter(pk=project.pk).first()  # one deploy of a project settles at a time
        current, _ = ProjectVersion.objects.update_or_create(
            project=project,
            version=version,
            defaults={
                "source": deploy.source, "ref": deploy.ref, "commit": commit, "spiders": names,
                "settings_module": settings_module, "egg_sha256": digest, "egg_size": len(egg),
                "lock": lock, "lock_sha256": lock_sha256(lock) if lock else "",
                "environment_sizes": publication.environment_sizes,
            },
        )
        _make_current(project, current, publication.accepted, names, {n: path_prefix + p for n, p in paths.items()})
        log(f"Version {version} is now current ({len(names)} spider(s))")
        deploy.succeed(version=current, log=log.text)
    if lock:
        try:
            prune_environments()
        except Exception:  # noqa: BLE001 - tidying up must never fail a deploy that succeeded
            logger.exception("Could not prune the worker's project environments")
    return current


def _make_current(project: Project, version: ProjectVersion, nodes: list[Node], names: list[str], paths: dict[str, str]) -> None:
    ProjectVersion.objects.filter(project=project, is_current=True).exclude(pk=version.pk).update(is_current=False)
    ProjectVersion.objects.filter(pk=version.pk).update(is_current=True, deployed_at=timezone.now())
    version.is_current = True
    version.nodes.add(*nodes)
    for name in names:
        Spider.objects.update_or_create(
            project=project, name=name, defaults={"version": version, "repo_path": paths.get(name, "")}
        )
