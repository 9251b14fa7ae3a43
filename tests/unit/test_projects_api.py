"""Projects API: creation and validation, write-only credentials, ownership, deploy requests, push webhooks."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from django.conf import settings as django_settings
from rest_framework.test import APIClient

from projects import tasks
from projects.models import Deploy, Project, ProjectVersion
from tests.unit.test_projects_validation import HOSTILE_URLS

pytestmark = pytest.mark.django_db

KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n"


@pytest.fixture
def queued(monkeypatch) -> list[str]:
    """Deploy ids sent to the worker (none runs here)."""
    sent: list[str] = []
    monkeypatch.setattr(tasks.deploy, "delay", lambda deploy_id: sent.append(deploy_id))
    return sent


def create(api, **body) -> dict:
    payload = {"name": "shop", "git_url": "https://github.com/acme/shop.git", "branch": "main", **body}
    response = api.post("/api/v1/projects", payload, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def no_deploy_dirs() -> bool:
    base = django_settings.DEPLOY_TMP_DIR
    return not base.exists() or not any(base.iterdir())


def test_create_project_never_echoes_credentials(api):
    body = create(api, token="ghp_supersecret")
    assert "token" not in body and "deploy_key" not in body and "ghp_supersecret" not in json.dumps(body)
    assert body["has_credentials"] is True and body["current_version"] is None and body["spiders"] == []
    assert body["scrapyd_name"] == f"u{Project.objects.get().owner_id}-shop"
    assert body["webhook_secret"] and body["webhook_url"].endswith(f"/api/v1/projects/{body['id']}/hooks/push")
    project = Project.objects.get()
    assert "ghp_supersecret" not in project.token_encrypted and project.token == "ghp_supersecret"
    for response in (api.get(f"/api/v1/projects/{body['id']}"), api.get("/api/v1/projects")):
        assert response.status_code == 200 and "ghp_supersecret" not in response.content.decode()
    assert api.get(f"/api/v1/projects/{body['id']}").json()["webhook_secret"] == body["webhook_secret"]
    assert "webhook_secret" not in api.get("/api/v1/projects").json()["results"][0]


def test_ssh_project_with_deploy_key(api):
    body = create(api, git_url="git@github.com:acme/shop.git", deploy_key=KEY)
    assert body["has_credentials"] and "PRIVATE KEY" not in json.dumps(body)
    assert Project.objects.get().deploy_key == KEY


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"name": "bad name"}, "name"),
        ({"branch": "--upload-pack=x"}, "branch"),
        ({"branch": "a..b"}, "branch"),
        ({"token": "t", "deploy_key": KEY}, "token"),
        ({"git_url": "git@github.com:acme/shop.git", "token": "t"}, "token"),
        ({"deploy_key": KEY}, "deploy_key"),
        ({"deploy_key": "not a key"}, "deploy_key"),
    ],
)
def test_invalid_project_input_is_refused_by_field(api, extra, field):
    payload = {"name": "shop", "git_url": "https://github.com/acme/shop.git", **extra}
    response = api.post("/api/v1/projects", payload, format="json")
    assert response.status_code == 400
    assert response.json()["error"] == "validation_error" and field in response.json()["details"]
    assert not Project.objects.exists()


@pytest.mark.parametrize("url", HOSTILE_URLS)
def test_hostile_git_urls_are_refused_and_leave_no_trace(api, settings, queued, url):
    settings.GIT_ALLOW_LOCAL = False
    response = api.post("/api/v1/projects", {"name": "shop", "git_url": url}, format="json")
    assert response.status_code == 400, response.json()
    assert response.json()["error"] == "validation_error" and "git_url" in response.json()["details"]
    assert not Project.objects.exists() and not Deploy.objects.exists() and not queued
    assert no_deploy_dirs()


def test_local_repository_allowed_only_with_git_allow_local(api, settings):
    settings.GIT_ALLOW_LOCAL = False
    assert api.post("/api/v1/projects", {"name": "a", "git_url": "/srv/shop"}, format="json").status_code == 400
    settings.GIT_ALLOW_LOCAL = True
    assert api.post("/api/v1/projects", {"name": "a", "git_url": "/srv/shop"}, format="json").status_code == 201


def test_names_are_unique_per_owner_only(api, other_api):
    first = create(api)
    again = api.post("/api/v1/projects", {"name": "shop", "git_url": "https://x.org/a/b"}, format="json")
    assert again.status_code == 400 and "name" in again.json()["details"]
    theirs = create(other_api)
    assert theirs["scrapyd_name"] != first["scrapyd_name"]


def test_another_users_project_is_not_found(api, other_api, queued):
    body = create(api)
    for path in (f"/api/v1/projects/{body['id']}", f"/api/v1/projects/{body['id']}/deploys"):
        response = other_api.get(path)
        assert response.status_code == 404 and response.json()["error"] == "not_found"
    assert other_api.post(f"/api/v1/projects/{body['id']}/deploy", {}, format="json").status_code == 404
    assert other_api.get("/api/v1/projects").json()["count"] == 0
    assert api.get("/api/v1/projects/not-a-uuid").status_code == 404
    assert not queued


def test_deploy_request_is_accepted_and_queued(api, queued, django_capture_on_commit_callbacks):
    body = create(api)
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(f"/api/v1/projects/{body['id']}/deploy", {}, format="json")
    assert response.status_code == 202
    deploy = response.json()
    assert deploy["status"] == "building" and deploy["ref"] == "main" and deploy["trigger"] == "api"
    assert queued == [deploy["id"]]
    with django_capture_on_commit_callbacks(execute=True):
        tagged = api.post(f"/api/v1/projects/{body['id']}/deploy", {"ref": "v1.2"}, format="json").json()
    assert tagged["ref"] == "v1.2"
    listing = api.get(f"/api/v1/projects/{body['id']}/deploys").json()
    assert [d["id"] for d in listing["results"]] == [tagged["id"], deploy["id"]] and "log" not in listing["results"][0]
    detail = api.get(f"/api/v1/projects/{body['id']}/deploys/{deploy['id']}").json()
    assert detail["id"] == deploy["id"] and "log" in detail
    assert api.get(f"/api/v1/projects/{body['id']}/deploys/{Project.objects.get().pk}").status_code == 404


@pytest.mark.parametrize("ref", ["--upload-pack=touch /tmp/x", "-oProxyCommand=x", "a..b", "main\n", "x\x00"])
def test_hostile_refs_are_refused(api, queued, ref):
    body = create(api)
    response = api.post(f"/api/v1/projects/{body['id']}/deploy", {"ref": ref}, format="json")
    assert response.status_code == 400 and "ref" in response.json()["details"]
    assert not Deploy.objects.exists() and not queued and no_deploy_dirs()


def _push(project: dict, *, branch: str = "main", secret: str | None = None, gitlab: bool = False):
    body = json.dumps({"ref": f"refs/heads/{branch}", "after": "b" * 40}).encode()
    secret = project["webhook_secret"] if secret is None else secret
    if gitlab:
        headers = {"HTTP_X_GITLAB_TOKEN": secret, "HTTP_X_GITLAB_EVENT": "Push Hook"}
    else:
        signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        headers = {"HTTP_X_HUB_SIGNATURE_256": signature, "HTTP_X_GITHUB_EVENT": "push"}
    return APIClient().post(f"/api/v1/projects/{project['id']}/hooks/push", body, content_type="application/json", **headers)


def test_signed_push_webhook_deploys_the_branch(api, queued, django_capture_on_commit_callbacks):
    project = create(api)
    for gitlab in (False, True):
        with django_capture_on_commit_callbacks(execute=True):
            response = _push(project, gitlab=gitlab)
        assert response.status_code == 202, response.json()
        assert response.json()["trigger"] == "webhook" and response.json()["ref"] == "main"
    assert len(queued) == 2
    other_branch = _push(project, branch="feature")
    assert other_branch.status_code == 200 and "not the project's branch" in other_branch.json()["message"]
    assert len(queued) == 2


def test_push_webhook_with_a_bad_signature_is_refused(api, queued):
    project = create(api)
    for response in (_push(project, secret="wrong"), _push(project, secret="wrong", gitlab=True),
                     APIClient().post(f"/api/v1/projects/{project['id']}/hooks/push", {}, format="json")):
        assert response.status_code == 401
        assert response.json()["error"] == "invalid_signature"
    assert not Deploy.objects.exists() and not queued
    missing = _push({**project, "id": "00000000-0000-0000-0000-000000000000"})
    assert missing.status_code == 404


def test_current_version_and_find_spider(user, other_user):
    from core.errors import NotFound, ValidationFailed
    from projects.models import Spider
    from projects.services import create_project, current_version, find_spider

    shop = create_project(owner=user, name="shop", git_url="https://x.org/a/shop")
    blog = create_project(owner=user, name="blog", git_url="https://x.org/a/blog")
    assert current_version(shop) is None
    old = ProjectVersion.objects.create(project=shop, version="v1", spiders=["a"], settings_module="s", egg_sha256="x")
    new = ProjectVersion.objects.create(project=shop, version="v2", spiders=["a", "b"], settings_module="s", egg_sha256="y", is_current=True)
    a = Spider.objects.create(project=shop, name="a", version=new, repo_path="shop/spiders/a.py")
    gone = Spider.objects.create(project=shop, name="gone", version=old)
    assert current_version(shop) == new
    assert find_spider(user, spider_id=a.id) == a and find_spider(user, spider_name="a") == a
    for kwargs in ({"spider_id": gone.id}, {"spider_name": "gone"}, {"spider_id": "nope"}, {"spider_name": "zzz"}):
        with pytest.raises(NotFound, match="Spider not found"):
            find_spider(user, **kwargs)
    with pytest.raises(NotFound):
        find_spider(other_user, spider_id=a.id)
    blog_v = ProjectVersion.objects.create(project=blog, version="v1", spiders=["a"], settings_module="s", egg_sha256="z", is_current=True)
    Spider.objects.create(project=blog, name="a", version=blog_v)
    with pytest.raises(ValidationFailed):
        find_spider(user, spider_name="a")
    with pytest.raises(ValidationFailed):
        find_spider(user)


def test_admin_pages_and_deploy_now_action(client, django_user_model, user, queued, django_capture_on_commit_callbacks):
    from projects.models import Spider
    from projects.services import create_project

    admin_user = django_user_model.objects.create_superuser("root", password="x")
    client.force_login(admin_user)
    project = create_project(owner=user, name="shop", git_url="https://github.com/acme/shop.git")
    version = ProjectVersion.objects.create(project=project, version="abc", spiders=["a"], settings_module="s", egg_sha256="x", is_current=True)
    spider = Spider.objects.create(project=project, name="a", version=version, repo_path="shop/spiders/a.py")
    deploy = Deploy.objects.create(project=project, ref="main", log="[ 0.0s] hello")
    for path in ("/admin/projects/project/", f"/admin/projects/project/{project.pk}/change/", "/admin/projects/deploy/",
                 f"/admin/projects/deploy/{deploy.pk}/change/", f"/admin/projects/projectversion/{version.pk}/change/",
                 f"/admin/projects/spider/{spider.pk}/change/"):
        assert client.get(path).status_code == 200, path
    assert "hello" in client.get(f"/admin/projects/deploy/{deploy.pk}/change/").content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/admin/projects/project/", {"action": "deploy_now", "_selected_action": [project.pk]})
    assert response.status_code == 302
    assert Deploy.objects.filter(trigger="admin", ref="main").count() == 1 and len(queued) == 1
