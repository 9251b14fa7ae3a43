"""Project versions on disk and on the nodes: eggs kept under EGGS_DIR, uploaded to every enabled node.

The platform keeps every version's egg so that a node added later (or one that lost its eggs) can be
given the current versions before it takes runs. With STORAGE_URL each egg is also kept in the bucket
(<prefix>/eggs/<project>/<version>.egg), and a process whose EGGS_DIR lacks one fetches it from there:
the worker or web process that deployed a version need not be the one that gives it to a node.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

from core import objectstore
from core.errors import Conflict, NodeUnavailable
from nodes.client import LogNotFound, ScrapydClient, ScrapydError
from nodes.models import Node

from .environments import ENVIRONMENT_LOG_SPIDER, lock_log_name, lock_sha256
from .errors import DeployFailed
from .models import Project, ProjectVersion

logger = logging.getLogger(__name__)


def egg_path(project: Project, version: str) -> Path:
    return project.eggs_dir / f"{version}.egg"


def _egg_key(bucket: objectstore.Bucket, path: Path) -> str:
    return bucket.key("eggs", path.relative_to(Path(settings.EGGS_DIR)).as_posix())


def store_egg(path: Path, egg: bytes) -> None:
    """Keep an egg: written atomically under EGGS_DIR (a reader never sees half a file), and in the bucket."""
    _write_egg(path, egg)
    bucket = objectstore.configured()
    if bucket is not None:
        bucket.put(_egg_key(bucket, path), egg)


def egg_available(path: Path) -> bool:
    """Whether the egg at `path` is here, fetched from the bucket first if this machine has no copy."""
    if path.is_file():
        return True
    bucket = objectstore.configured()
    if bucket is None:
        return False
    try:
        with bucket.open(_egg_key(bucket, path)) as stream:
            egg = stream.read()
    except FileNotFoundError:
        return False
    _write_egg(path, egg)
    return True


def delete_egg(path: Path) -> None:
    """Remove a kept egg (here, and from the bucket)."""
    path.unlink(missing_ok=True)
    bucket = objectstore.configured()
    if bucket is not None:
        bucket.delete(_egg_key(bucket, path))


def _write_egg(path: Path, egg: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".egg")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(egg)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _upload_client(node: Node, *, lock: str = "") -> ScrapydClient:
    # addversion.json lists the spiders before it answers: give it as long as our own listing gets,
    # and, for a version with a lock, as long as the node may take to build its environment first.
    build = settings.PROJECT_ENVS_BUILD_TIMEOUT if lock else 0
    return ScrapydClient.for_node(node, timeout=settings.SCRAPYD_TIMEOUT + settings.DEPLOY_LIST_TIMEOUT + build)


def _versions_on(client: ScrapydClient, project: str) -> list[str]:
    try:
        return client.list_versions(project)
    except ScrapydError as exc:
        if "not found" in exc.message:
            return []
        raise


@dataclass
class Publication:
    """Which nodes received a version, and which of them did not have it before (those a rollback removes)."""

    accepted: list[Node] = field(default_factory=list)
    added: list[Node] = field(default_factory=list)
    environment_sizes: dict[str, int] = field(default_factory=dict)


def _build_log_size(client: ScrapydClient, project: Project, lock: str) -> int:
    try:
        return client.log_size(project=project.scrapyd_name, spider=ENVIRONMENT_LOG_SPIDER, job_id=lock_log_name(lock))
    except (LogNotFound, NodeUnavailable):
        return 0


def _report_environment(client: ScrapydClient, node: Node, project: Project, lock: str, since: int,
                        log: Callable[..., None], done: Publication) -> None:
    """Add the node's build log (what it wrote since `since`) to the deploy's, and its environment's size."""
    try:
        chunk = client.log(project=project.scrapyd_name, spider=ENVIRONMENT_LOG_SPIDER, job_id=lock_log_name(lock), start=since)
    except (LogNotFound, NodeUnavailable):
        chunk = None
    if chunk is not None and chunk.data.strip():
        log(f"Node {node.name} built the environment:")
        log(chunk.data.decode(errors="replace"), indent=True)
    else:
        log(f"Node {node.name} already had the environment (reused, no build)")
    try:
        usage = client.environments()
    except NodeUnavailable:
        return
    digest = lock_sha256(lock)
    for env in usage.get("environments", {}).values():
        if isinstance(env, dict) and env.get("lock_sha256") == digest and isinstance(env.get("bytes"), int):
            done.environment_sizes[node.name] = env["bytes"]


def publish(*, project: Project, version: str, egg: bytes, log: Callable[..., None], lock: str = "") -> Publication:
    """Upload an egg to every enabled node; on a node's refusal, remove it again where it was new and fail.

    An unreachable node is skipped (it receives the version when it is next synced, before it takes runs).
    """
    done = Publication()
    for node in Node.objects.filter(enabled=True).order_by("name"):
        client = _upload_client(node, lock=lock)
        try:
            present = version in _versions_on(client, project.scrapyd_name)
        except NodeUnavailable as exc:
            log(f"Node {node.name} skipped: {exc.message}")
            continue
        since = _build_log_size(client, project, lock) if lock else 0
        try:
            spiders = client.add_version(project.scrapyd_name, version, egg)
        except ScrapydError as exc:
            log(f"Node {node.name} refused the egg")
            # Scrapyd stores an egg before it lists its spiders: a refused egg may be on the node now.
            withdraw(project=project, version=version, nodes=done.added + ([] if present else [node]), log=log)
            raise DeployFailed(f"Scrapyd on node {node.name} refused the egg", detail=exc.message) from None
        except NodeUnavailable as exc:
            log(f"Node {node.name} skipped: {exc.message}")
            continue
        done.accepted.append(node)
        if not present:
            done.added.append(node)
        log(f"Uploaded to node {node.name} ({spiders} spider(s) found by Scrapyd)")
        if lock:
            _report_environment(client, node, project, lock, since, log, done)
    if not done.accepted:
        log("No node received the version now: each gets it when next synced, before it takes runs")
    return done


def _remove(client: ScrapydClient, node: Node, project: Project, version: str, log: Callable[[str], None]) -> None:
    try:
        client.delete_version(project.scrapyd_name, version)
        log(f"Removed version {version} from node {node.name}")
    except NodeUnavailable as exc:
        if "not found" not in exc.message:
            log(f"Could not remove version {version} from node {node.name}: {exc.message}")


def withdraw(*, project: Project, version: str, nodes: list[Node], log: Callable[[str], None]) -> None:
    """Delete a version from nodes that received it for a deploy that then failed."""
    for node in nodes:
        _remove(ScrapydClient.for_node(node), node, project, version, log)


def ensure_version(*, node: Node, version: ProjectVersion) -> bool:
    """Make sure `node` has `version` (uploading the stored egg if not); True if it was uploaded."""
    project = version.project
    client = _upload_client(node, lock=version.lock)
    if version.version in _versions_on(client, project.scrapyd_name):
        version.nodes.add(node)
        return False
    path = version.egg_path
    if not egg_available(path):
        raise Conflict(f"The egg of {project.name} {version.version} is not in EGGS_DIR on this machine: deploy it again")
    client.add_version(project.scrapyd_name, version.version, path.read_bytes())
    version.nodes.add(node)
    logger.info("Uploaded %s %s to node %s", project.scrapyd_name, version.version, node.name)
    return True


def ensure_versions(node: Node) -> list[str]:
    """Give `node` every project's current version it lacks; returns the `project:version` uploaded.

    One listprojects.json per node; a version is checked on the node only if the platform has not seen
    it there yet or the node lost the whole project. An unreachable node raises NodeUnavailable.
    """
    client = ScrapydClient.for_node(node)
    on_node = set(client.list_projects())
    known = set(ProjectVersion.objects.filter(is_current=True, nodes=node).values_list("pk", flat=True))
    uploaded = []
    for version in ProjectVersion.objects.filter(is_current=True).select_related("project"):
        if version.pk in known and version.project.scrapyd_name in on_node:
            continue
        try:
            if ensure_version(node=node, version=version):
                uploaded.append(f"{version.project.scrapyd_name}:{version.version}")
        except (ScrapydError, Conflict) as exc:
            logger.warning("Node %s: cannot deploy %s %s: %s", node.name, version.project.scrapyd_name, version.version, exc.message)
    return uploaded
