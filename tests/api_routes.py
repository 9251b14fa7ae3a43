"""The API's routes, read from the URLconf, and one object of each kind a route can name.

Tests that must hold for every route (ownership, bad input) iterate `api_routes()`, so a route added
later is covered without anyone listing it. A route whose objects no factory here can make fails
those tests until `make_objects` learns about it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta

from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone

API_PREFIX = "/api/v1/"
HTTP_METHODS = ("get", "post", "put", "patch", "delete")


@dataclass(frozen=True)
class Route:
    """One API route: its path template (`/api/v1/jobs/{pk}/run`), its view, and the methods it allows."""

    template: str
    view: object
    methods: tuple[str, ...]
    introspected: bool = True  # False: a plain Django view, whose methods cannot be read
    keyless: bool = False  # authenticated by something other than a user's API key (a webhook signature)
    params: tuple[str, ...] = field(default=())

    @property
    def family(self) -> str:
        rest = self.template[len(API_PREFIX):]
        if rest.startswith("internal/"):
            rest = rest[len("internal/"):]
        return rest.split("/", 1)[0]

    def url(self, ids: dict[str, str]) -> str:
        return re.sub(r"\{(\w+)\}", lambda m: ids[m.group(1)], self.template)


def _template(pattern) -> str:
    text = str(pattern.pattern)
    if hasattr(pattern.pattern, "_route"):  # path(): <uuid:run_id>
        return re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", text)
    text = re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", text)
    return text.replace("^", "").replace("$", "").replace("/?", "")


def _walk(patterns, prefix: str = "/"):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _walk(pattern.url_patterns, prefix + _template(pattern))
        elif isinstance(pattern, URLPattern):
            yield prefix + _template(pattern), pattern.callback


def _methods(callback) -> tuple[tuple[str, ...], bool, bool]:
    actions = getattr(callback, "actions", None)
    cls = getattr(callback, "cls", None)
    if actions:  # a DRF viewset route: {method: action}
        methods = tuple(m for m in HTTP_METHODS if m in actions)
        action = getattr(cls, actions.get("post") or next(iter(actions.values())), None)
        keyless = getattr(action, "kwargs", {}).get("authentication_classes") == []
        return methods, True, keyless
    if cls is not None:  # a DRF APIView
        return tuple(m for m in HTTP_METHODS if hasattr(cls, m)), True, cls.authentication_classes == []
    return HTTP_METHODS, False, False


def api_routes() -> list[Route]:
    """Every /api/v1 route of the URLconf (each path once: a viewset's list and detail are two routes)."""
    routes: dict[str, Route] = {}
    for template, callback in _walk(get_resolver().url_patterns):
        if not template.startswith(API_PREFIX) or template in routes:
            continue
        methods, introspected, keyless = _methods(callback)
        params = tuple(re.findall(r"\{(\w+)\}", template))
        routes[template] = Route(template, callback, methods, introspected, keyless, params)
    return list(routes.values())


def make_objects(user) -> dict[str, dict[str, str]]:
    """One object of each family for `user`: the ids that fill a route's template, by family."""
    from exports.itemstore import ItemStore
    from exports.models import ResultFile
    from jobs.models import Job, Run, RunStatus
    from nodes.models import Node
    from projects.models import Deploy, Project, ProjectVersion, Source
    from schedules.services import set_schedule
    from schedules.spec import parse_scheduling

    job = Job.objects.create(owner=user, name="Products", source="https://example.com/")
    set_schedule(job=job, spec=parse_scheduling({"hours": [9], "minutes": [0]}))
    run = Run.objects.create(owner=user, job=job, project="builtin", spider="query")
    ItemStore(run.id).append(0, [{"name": "a", "price": 1}, {"name": "b", "price": None}])
    run.finish(RunStatus.SUCCEEDED)
    now = timezone.now()
    file = ResultFile.objects.create(
        owner=user, run=run, format="csv", options={}, fingerprint=f"f-{run.id.hex}", filename="products.csv",
        content_type="text/csv", max_downloads=10, local_expires_at=now + timedelta(hours=1),
        expires_at=now + timedelta(days=1),
    )
    node = Node.objects.create(name=f"node{user.pk}", url="http://127.0.0.1:9/")
    project = Project.objects.create(owner=user, name=f"shop{user.pk}", git_url="https://github.com/acme/shop.git")
    deploy = Deploy.objects.create(project=project, source=Source.GIT, ref="main")
    version = ProjectVersion.objects.create(project=project, version="a" * 40, spiders=["s"], settings_module="s.settings",
                                            egg_sha256="0" * 64)
    from alerts.models import Delivery, Endpoint

    endpoint = Endpoint.objects.create(owner=user, url="http://127.0.0.1:9/hook", events=["run.failed"])
    delivery = Delivery.objects.create(endpoint=endpoint, event="run.failed", body="{}", run=run)
    job_ids = {"pk": str(job.id)}
    run_ids = {"pk": str(run.id), "run_id": str(run.id)}
    return {
        "jobs": job_ids,
        "runs": run_ids,
        "files": {"file_id": str(file.id), "filename": file.filename},
        "projects": {"pk": str(project.id), "deploy_id": str(deploy.id), "version": version.version},
        "nodes": {"pk": str(node.id)},  # no user's: staff only
        "alerts": {"pk": str(endpoint.id)},
        "deliveries": {"pk": str(delivery.id)},
    }


# Families whose objects belong to no user: not part of the ownership promise (say why).
UNOWNED = {
    "nodes": "Scrapyd nodes are the operators' (staff only, 403 for everyone else), no user's",
    # A share link is asked with no key at all: the token in its URL is the credential, whoever holds it
    # gets the file (that is its purpose), so "another user's key is a 404" does not apply. Its own promise
    # (another file's token, a changed character, a revoked or expired link: the same 404) is tested in
    # tests/unit/test_seed_compat_share.py and, with no header, in tests/integration/test_share_links.py.
    "shared": "The token in a share link's URL is its credential, not a user's key",
}
