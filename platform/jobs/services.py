"""Services for jobs and runs: saving jobs, starting runs and dispatching them to nodes."""

from __future__ import annotations

import contextlib
import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from core.errors import NodeUnavailable
from core.outbox import send_on_commit
from monitoring.series import DISPATCH_LATENCY, observe
from nodes.client import ScrapydClient
from nodes.models import Node
from nodes.services import ensure_builtin, probe
from projects.runnable import clean_arguments, runnable_version
from usage import quotas

from . import queue
from .crawl import crawl_settings, spider_arguments
from .models import IllegalTransition, Job, Query, Run, RunStatus, Trigger
from .policies import copied_fields, run_fields
from .removal import delete_job  # noqa: F401 - the service jobs' callers use (views, admin)

logger = logging.getLogger(__name__)

QUERY_SPIDER = "query"
JOB_FIELDS = ("name", "source", "spider", "arguments", "rate_limit", "render_config", "proxy_config", "item_selector", "follow",
              "max_pages", "max_depth", "max_items", "item_schema", "invalid_items", "monitors",
              "time_limit_s", "retries", "priority", "node_labels")


def _set_queries(job: Job, queries: list[dict[str, Any]]) -> None:
    job.queries.all().delete()
    Query.objects.bulk_create(
        Query(job=job, position=i, name=q["name"], type=q["type"], query=q["query"],
              join=q.get("join", False), all=q.get("all", False), validate=q.get("validate") or {})
        for i, q in enumerate(queries)
    )


@transaction.atomic
def create_job(*, owner, queries: list[dict[str, Any]], **fields: Any) -> Job:
    """Save a new query job (input already validated by the serializer)."""
    job = Job.objects.create(owner=owner, **{k: v for k, v in fields.items() if k in JOB_FIELDS})
    _set_queries(job, queries)
    _set_schedule(job, fields)
    return job


@transaction.atomic
def update_job(*, job: Job, queries: list[dict[str, Any]] | None = None, **fields: Any) -> Job:
    """Change a job; runs already started keep the configuration they started with."""
    for name, value in fields.items():
        if name in JOB_FIELDS:
            setattr(job, name, value)
    job.save()
    if queries is not None:
        _set_queries(job, queries)
    _set_schedule(job, fields)
    return job


def _set_schedule(job: Job, fields: dict[str, Any]) -> None:
    """`scheduling` given: the job's schedule and its beat entry follow it (None removes them)."""
    if "scheduling" in fields:
        from schedules.services import set_schedule  # schedules imports jobs: import here

        set_schedule(job=job, spec=fields["scheduling"])


def start_run(*, job: Job, trigger: str = Trigger.API, api_key=None, priority: int | None = None) -> Run:
    """Create a queued run of `job` and have a worker dispatch it once the run is committed.

    `api_key`: the key that asked (its usage is counted under it); None for schedules and the admin.
    `priority`: this run's, instead of the job's (jobs.policies)."""
    if job.is_spider_job:
        return start_spider_run(owner=job.owner, spider=job.spider, arguments=job.arguments, job=job, trigger=trigger,
                                api_key=api_key, priority=priority)
    config = job.spider_config()
    quotas.check_run(user_id=job.owner_id, proxy_config=config.get("proxy"))  # 429 past the owner's plan
    with transaction.atomic():
        run = Run(owner=job.owner, job=job, project=settings.BUILTIN_PROJECT, spider=QUERY_SPIDER,
                  config=config, trigger=trigger, api_key=api_key, **run_fields(job, priority=priority))
        # A crawl's JOBDIR lives on its node, relative to Scrapyd's folder: pause and resume use it.
        run.jobdir = f"jobdirs/{run.id.hex}"
        run.save()
        _enqueue(run)
    return run


def start_spider_run(*, owner, spider, arguments: dict[str, str], version: str | None = None,
                     job: Job | None = None, trigger: str = Trigger.API, api_key=None, priority: int | None = None,
                     time_limit_s: int | None = None) -> Run:
    """Create a queued run of a deployed spider, of its project's current version unless pinned.

    The version must have the spider and `arguments` must be valid (projects.runnable), checked here for
    every way a run starts, so that nothing a crawl would refuse later reaches a node. Its policies are
    the job's, or the platform defaults without a job; `priority` and `time_limit_s` override them.
    """
    pinned = runnable_version(spider, version).version
    arguments = clean_arguments(arguments)
    quotas.check_run(user_id=owner.pk)
    with transaction.atomic():
        run = Run(owner=owner, job=job, deployed_spider=spider, project=spider.project.scrapyd_name,
                  spider=spider.name, version=pinned, arguments=arguments, trigger=trigger, api_key=api_key,
                  **run_fields(job, priority=priority, time_limit_s=time_limit_s))
        run.jobdir = f"jobdirs/{run.id.hex}"
        run.save()
        _enqueue(run)
    return run


def start_continuation(*, paused: Run) -> Run:
    """Resume a paused crawl: a new run on the same node, from the same JOBDIR, into the same result."""
    quotas.check_run(user_id=paused.owner_id, proxy_config=(paused.config or {}).get("proxy"))
    with transaction.atomic():
        run = Run.objects.create(
            owner=paused.owner, job=paused.job, project=paused.project, spider=paused.spider, config=paused.config,
            trigger=Trigger.RESUME, parent_id=paused.result_key, part=paused.part + 1, jobdir=paused.jobdir,
            node=paused.node, version=paused.version, result_count=paused.result_count,
            deployed_spider=paused.deployed_spider, arguments=paused.arguments, api_key_id=paused.api_key_id,
            **copied_fields(paused),
        )
        _enqueue(run)
    return run


def _enqueue(run: Run) -> None:
    from .tasks import dispatch_run  # tasks import services: import here to keep the graph acyclic

    # Through the outbox: a broker that is down delays the dispatch, it neither fails the request nor loses it.
    send_on_commit(dispatch_run, str(run.id))


def dispatch(run_id: str) -> None:
    """Send a queued run to a node, at most once however often this is called.

    A run first leaves the platform's queue (jobs.queue), which chooses its node when a slot is free
    there; until then this does nothing, and the queue moves again when a slot frees. Then the
    run is sent: the Scrapyd job id is the run's own id, and a node that was given this run before is
    asked whether it has it before anything is scheduled, so a redelivered task never starts a second
    crawl. A claim with a lease (the task time limit) keeps two live deliveries from sending it at once.
    A resumed crawl goes back to the node that holds its JOBDIR.
    """
    run = Run.objects.filter(pk=run_id).select_related("node").first()
    if run is None or run.status != RunStatus.QUEUED:
        return
    now = timezone.now()
    if run.dispatch_claimed_at and now - run.dispatch_claimed_at < timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT):
        return  # another delivery is dispatching it
    # Given to a node before: claimed once already, or (a run made before the queue) a node but no queue record.
    assigned = run.dequeued_at is not None
    given_before = run.node_id is not None and ((assigned and run.dispatch_attempts > 0) or (not assigned and not run.part))
    if not assigned and not given_before:
        taken = run.pk in queue.pump(prefer=run.pk)
        run.refresh_from_db()
        if not taken:
            if run.status == RunStatus.QUEUED and run.waiting_reason == queue.NO_NODE:
                # Retried with backoff, then failed saying so (tasks.dispatch_run): no node will come by itself.
                raise NodeUnavailable(f"No Scrapyd node available: {queue.NO_NODE}")
            return  # it waits in the queue (its waiting_reason says why), or another worker took it
        if run.status != RunStatus.QUEUED:
            return
    claimed = Run.objects.filter(
        pk=run.pk, status=RunStatus.QUEUED, dispatch_claimed_at=run.dispatch_claimed_at
    ).update(dispatch_claimed_at=now, dispatch_attempts=F("dispatch_attempts") + 1)
    if not claimed:
        return
    node = run.node
    scheduling = False
    try:
        # A node given this run before may have it even if we never heard back; if that node
        # cannot be asked, wait for it rather than risk a second crawl elsewhere.
        if given_before and ScrapydClient.for_node(node).job_state(run.scrapyd_job_id) is not None:
            _settle_dispatched(run, node)
            return
        if not given_before:
            probe(node)  # the queue counts slots in the database: make sure the node answers before using it
        version = _ensure_code(run, node)
        args = spider_arguments(run)
        Run.objects.filter(pk=run.pk).update(version=version)
        scheduling = True
        ScrapydClient.for_node(node).schedule(
            project=run.project, spider=run.spider, job_id=run.scrapyd_job_id, version=version,
            settings=crawl_settings(run), args=args,
        )
    except Exception as exc:
        # Release the claim so that a retry can go ahead (it checks the node first). A run that never
        # reached `schedule` goes back to the queue, which prefers another node now (last_error).
        release: dict[str, Any] = {"dispatch_claimed_at": None}
        if not scheduling and not given_before:
            release.update(dequeued_at=None, node=run.node if run.part else None)
            if isinstance(exc, NodeUnavailable):
                Node.objects.filter(pk=node.pk).update(last_error=exc.message[:1000])
        Run.objects.filter(pk=run.pk, dispatch_claimed_at=now).update(**release)
        raise
    logger.info("Run %s dispatched to node %s", run.id, node.name)
    dispatched_at = timezone.now()
    _settle_dispatched(run, node)
    # Once per run (only here does a node take it), and after the run's own state is settled.
    observe(DISPATCH_LATENCY, (dispatched_at - run.created_at).total_seconds())


def _ensure_code(run: Run, node: Node) -> str:
    """Make sure the node has the version the run uses (deployed before it takes the run)."""
    if run.deployed_spider_id is None:
        return ensure_builtin(node)
    from projects.models import ProjectVersion
    from projects.versions import ensure_version

    version = ProjectVersion.objects.select_related("project").get(project_id=run.deployed_spider.project_id,
                                                                   version=run.version)
    ensure_version(node=node, version=version)
    return version.version


def _settle_dispatched(run: Run, node: Node) -> None:
    try:
        run.mark_pending()
    except IllegalTransition:
        # The crawl already reported it started or finished: nothing to do. Unless the run was
        # cancelled while it was being dispatched: then stop the crawl it just got.
        if run.status == RunStatus.CANCELLED:
            ScrapydClient.for_node(node).cancel(project=run.project, job_id=run.scrapyd_job_id, signal="KILL")


def fail_dispatch(run_id: str, error: str) -> None:
    """Give up on dispatching a run."""
    run = Run.objects.filter(pk=run_id).first()
    if run is not None and run.status == RunStatus.QUEUED:
        with contextlib.suppress(IllegalTransition):
            run.finish(RunStatus.FAILED, error=f"Could not dispatch the run: {error}")
