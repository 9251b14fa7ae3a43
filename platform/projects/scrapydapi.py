"""Scrapyd's HTTP API, served by the platform under /scrapyd/ and scoped to the caller.

The tools Scrapy users already have work against the platform: `scrapyd-deploy` with a `scrapy.cfg`
target whose password is the user's API key uploads an egg, which becomes a new version of the user's
project exactly as a git deploy does. Answers keep Scrapyd's shape (`{"status": "ok", ...}`), errors
add this API's `error` code and use real HTTP statuses, which scrapyd-client reports as failures.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import uuid
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from core.errors import PlatformError
from core.idempotency import idempotent_handler
from core.models import ApiKey
from jobs import control
from jobs import services as job_services
from jobs.models import ACTIVE, Run, RunStatus
from nodes.client import SCHEDULE_PARAMETERS

from .deploys import deploy_egg
from .models import DeployStatus, Project, ProjectVersion
from .runnable import argument_errors, find_runnable_spider
from .services import create_project, current_version
from .validation import name_error
from .versions import delete_egg, egg_path, withdraw

NODE_NAME = "platform"


class ScrapydApiError(PlatformError):
    """An error answered in Scrapyd's shape."""


def _answer(data: dict, status: int = 200) -> JsonResponse:
    return JsonResponse({"node_name": NODE_NAME, **data}, status=status)


def _error(exc: PlatformError) -> JsonResponse:
    details = {"details": exc.details} if exc.details else {}
    return _answer({"status": "error", "error": exc.code, "message": exc.message, **details}, exc.status_code)


def _user(request: HttpRequest):
    """The user whose API key is the basic-auth password (any user name)."""
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        _, _, password = base64.b64decode(encoded.strip()).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    key = ApiKey.lookup(password) if password else None
    return key.user if key else None


def endpoint(methods: tuple[str, ...]):
    """A Scrapyd endpoint: basic auth with an API key, Scrapyd-shaped answers, errors caught."""

    def wrap(handler: Callable) -> Callable:
        @csrf_exempt
        @functools.wraps(handler)
        def view(request: HttpRequest):
            user = _user(request)
            if user is None:
                response = _answer({"status": "error", "error": "not_authenticated",
                                    "message": "Use your API key as the basic-auth password"}, 401)
                response["WWW-Authenticate"] = 'Basic realm="scrapyd"'
                return response
            if request.method not in methods:
                return _answer({"status": "error", "error": "method_not_allowed", "message": "Method not allowed"}, 405)
            params = request.POST if request.method == "POST" else request.GET
            try:
                return _answer({"status": "ok", **handler(request, user, params)})
            except PlatformError as exc:
                return _error(exc)

        return view

    return wrap


def _project(user, params, *, create: bool = False) -> Project:
    name = params.get("project", "")
    project = Project.objects.filter(owner=user, name=name).first()
    if project is None and create:
        if error := name_error(name):
            raise ScrapydApiError(f"project: {error}")
        return create_project(owner=user, name=name)
    if project is None:
        raise ScrapydApiError(f"project '{name}' not found")
    return project


@endpoint(("POST",))
def addversion(request, user, params) -> dict:
    egg = request.FILES.get("egg")
    if egg is None or not params.get("version"):
        raise ScrapydApiError("addversion.json needs project, version and egg")
    if egg.size > settings.EGG_MAX_BYTES:
        raise ScrapydApiError(f"The egg is larger than {settings.EGG_MAX_BYTES} bytes")
    project = _project(user, params, create=True)
    deploy = deploy_egg(project=project, version=params["version"], egg_bytes=egg.read(), requested_by=user)
    if deploy.status != DeployStatus.SUCCEEDED:
        raise ScrapydApiError(f"Deploy failed: {deploy.error}")
    return {"project": project.name, "version": params["version"], "spiders": len(deploy.spiders or [])}


@endpoint(("GET",))
def listprojects(request, user, params) -> dict:
    return {"projects": list(Project.objects.filter(owner=user).order_by("name").values_list("name", flat=True))}


@endpoint(("GET",))
def listversions(request, user, params) -> dict:
    project = _project(user, params)
    versions = ProjectVersion.objects.filter(project=project).order_by("deployed_at")
    return {"versions": list(versions.values_list("version", flat=True))}


@endpoint(("GET",))
def listspiders(request, user, params) -> dict:
    project = _project(user, params)
    version = params.get("_version")
    found = ProjectVersion.objects.filter(project=project, version=version).first() if version else current_version(project)
    if found is None:
        raise ScrapydApiError(f"version '{version}' not found" if version else "the project has no version")
    return {"spiders": sorted(found.spiders)}


@endpoint(("POST",))
@idempotent_handler
def schedule(request, user, params) -> dict:
    project = _project(user, params)
    if not params.get("spider"):
        raise ScrapydApiError("'spider' parameter is required")
    if params.getlist("setting"):
        raise ScrapydApiError("Settings cannot be set through the platform; put them in the project")
    # jobid and priority are the platform's to choose; every other field is a spider argument.
    arguments = {k: params[k] for k in params if k not in SCHEDULE_PARAMETERS}
    if errors := argument_errors(arguments):
        raise ScrapydApiError("; ".join(f"{k}: {v}" for k, v in errors.items()))
    runnable = find_runnable_spider(user, project=project, spider_name=params["spider"],
                                    version=params.get("_version") or None)
    run = job_services.start_spider_run(owner=user, spider=runnable.spider, arguments=arguments,
                                        version=runnable.version.version)
    return {"jobid": run.scrapyd_job_id}


def _user_run(user, params) -> Run:
    job = params.get("job", "")
    run = Run.objects.filter(owner=user, project=_project(user, params).scrapyd_name).filter(id__in=_as_uuid(job)).first()
    if run is None:
        raise ScrapydApiError(f"job '{job}' not found")
    return run


def _as_uuid(value: str) -> list:
    with contextlib.suppress(ValueError):
        return [uuid.UUID(value)]
    return []


@endpoint(("POST",))
def cancel(request, user, params) -> dict:
    run = _user_run(user, params)
    previous = {"queued": "pending", "pending": "pending", "running": "running"}.get(run.status)
    if previous is not None and run.cancel_requested_at is None:
        control.cancel_run(run=run)
    return {"prevstate": previous}


@endpoint(("GET",))
def listjobs(request, user, params) -> dict:
    runs = Run.objects.filter(owner=user, deployed_spider__isnull=False).select_related("deployed_spider__project")
    if params.get("project"):
        runs = runs.filter(project=_project(user, params).scrapyd_name)
    listing: dict[str, list] = {"pending": [], "running": [], "finished": []}
    for run in runs.order_by("created_at"):
        state = "running" if run.status == RunStatus.RUNNING else "pending" if run.status in ACTIVE else "finished"
        entry = {"id": run.scrapyd_job_id, "project": run.deployed_spider.project.name, "spider": run.spider,
                 "version": run.version, "status": run.status}
        if run.started_at:
            entry["start_time"] = run.started_at.isoformat()
        if run.finished_at:
            entry["end_time"] = run.finished_at.isoformat()
        listing[state].append(entry)
    return listing


@endpoint(("POST",))
def delversion(request, user, params) -> dict:
    project = _project(user, params)
    version = ProjectVersion.objects.filter(project=project, version=params.get("version", "")).first()
    if version is None:
        raise ScrapydApiError(f"version '{params.get('version', '')}' not found")
    if version.is_current:
        raise ScrapydApiError("This is the project's current version: deploy another one first")
    withdraw(project=project, version=version.version, nodes=list(version.nodes.all()), log=lambda message: None)
    delete_egg(egg_path(project, version.version))
    version.delete()
    return {}


@endpoint(("GET",))
def daemonstatus(request, user, params) -> dict:
    runs = Run.objects.filter(owner=user)
    return {
        "pending": runs.filter(status__in=[RunStatus.QUEUED, RunStatus.PENDING]).count(),
        "running": runs.filter(status=RunStatus.RUNNING).count(),
        "finished": runs.exclude(status__in=ACTIVE).count(),
    }


urlpatterns = [
    path(f"{view.__name__}.json", view)
    for view in (addversion, listprojects, listversions, listspiders, schedule, cancel, listjobs, delversion, daemonstatus)
]
