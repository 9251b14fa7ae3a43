"""Projects in the operator console: the API's validation and services behind the admin's forms and buttons."""

from __future__ import annotations

import pytest
from django.urls import reverse

from projects import tasks
from projects.deploysummary import deploy_cause, log_cause
from projects.models import Deploy, DeployStatus, Project, ProjectVersion, Spider, Trigger
from projects.serializers import ProjectSerializer

pytestmark = pytest.mark.django_db

KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n"
TOKEN = "ghp_consoleSecretToken123"


@pytest.fixture
def queued(monkeypatch) -> list[str]:
    """Deploy ids sent to the worker (none runs here)."""
    sent: list[str] = []
    monkeypatch.setattr(tasks.deploy, "delay", lambda deploy_id: sent.append(deploy_id))
    return sent


@pytest.fixture
def staff(client, django_user_model):
    user = django_user_model.objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(user)
    return user


def add_form(**fields) -> dict:
    return {"owner": "", "name": "shop", "git_url": "https://github.com/acme/shop.git", "branch": "main",
            "token": "", "deploy_key": "", **fields}


def make_project(owner, **fields) -> Project:
    project = Project(owner=owner, name="shop", git_url="https://github.com/acme/shop.git", branch="main", **fields)
    project.set_credentials(token=TOKEN)
    project.save()
    return project


def make_version(project: Project, version: str, *, current: bool, spiders=("products",)) -> ProjectVersion:
    made = ProjectVersion.objects.create(project=project, version=version, ref="main", commit=version,
                                         spiders=list(spiders), settings_module="shop.settings", egg_sha256="0" * 64,
                                         is_current=False)
    made.egg_path.parent.mkdir(parents=True, exist_ok=True)
    made.egg_path.write_bytes(b"egg")
    if current:
        ProjectVersion.objects.filter(pk=made.pk).update(is_current=True)
        made.is_current = True
    for name in spiders:
        Spider.objects.update_or_create(project=project, name=name, defaults={"version": made})
    return made


def api_message(field: str, **data) -> str:
    """What the API says about `field` for this input (from a user with no projects)."""
    from django.contrib.auth import get_user_model

    nobody, _ = get_user_model().objects.get_or_create(username="nobody")
    serializer = ProjectSerializer(data={"name": "shop", "git_url": "https://github.com/acme/shop.git", **data},
                                   context={"owner": nobody})
    assert not serializer.is_valid()
    return str(serializer.errors[field][0])


def test_add_form_defaults_the_owner_to_the_signed_in_user(client, staff):
    page = client.get(reverse("admin:projects_project_add"))
    assert page.status_code == 200
    assert page.context["adminform"].form.initial["owner"] == staff.pk


def test_project_form_refuses_a_file_url_with_the_apis_message(client, staff, settings):
    settings.GIT_ALLOW_LOCAL = False
    message = api_message("git_url", git_url="file:///etc")
    assert "Local repositories are not allowed" in message
    response = client.post(reverse("admin:projects_project_add"), add_form(owner=staff.pk, git_url="file:///etc"))
    assert response.status_code == 200  # the form again, with the error
    assert response.context["adminform"].form.errors["git_url"] == [message]
    assert not Project.objects.exists()


@pytest.mark.parametrize(("fields", "field"), [
    ({"branch": "--upload-pack=x"}, "branch"),
    ({"git_url": "ext::sh -c touch% /tmp/pwned"}, "git_url"),
    ({"git_url": "git@github.com:acme/shop.git", "token": "t"}, "token"),
    ({"deploy_key": "not a key", "git_url": "git@github.com:acme/shop.git"}, "deploy_key"),
])
def test_project_form_shows_the_apis_message_per_field(client, staff, fields, field):
    response = client.post(reverse("admin:projects_project_add"), add_form(owner=staff.pk, **fields))
    assert response.status_code == 200
    assert response.context["adminform"].form.errors[field] == [api_message(field, **fields)]
    assert not Project.objects.exists()


def test_project_name_unique_per_chosen_owner(client, staff, user):
    make_project(user)
    response = client.post(reverse("admin:projects_project_add"), add_form(owner=user.pk))
    assert response.context["adminform"].form.errors["name"] == ["You already have a project with this name"]
    response = client.post(reverse("admin:projects_project_add"), add_form(owner=staff.pk))
    assert response.status_code == 302 and Project.objects.filter(owner=staff).count() == 1


def test_credentials_are_write_only(client, staff):
    response = client.post(reverse("admin:projects_project_add"), add_form(owner=staff.pk, token=TOKEN))
    assert response.status_code == 302
    project = Project.objects.get()
    assert project.token == TOKEN and TOKEN not in project.token_encrypted
    page = client.get(reverse("admin:projects_project_change", args=[project.pk])).content.decode()
    assert TOKEN not in page and "A token is stored" in page
    assert project.webhook_secret in page and f"/api/v1/projects/{project.pk}/hooks/push" in page
    # Saved again with the inputs blank, the stored token stays; a deploy key replaces it.
    change = {"git_url": "https://github.com/acme/shop2.git", "branch": "main", "token": "", "deploy_key": ""}
    assert client.post(reverse("admin:projects_project_change", args=[project.pk]), change).status_code == 302
    project.refresh_from_db()
    assert project.token == TOKEN and project.git_url.endswith("shop2.git")
    ssh = {**change, "git_url": "git@github.com:acme/shop.git", "deploy_key": KEY}
    assert client.post(reverse("admin:projects_project_change", args=[project.pk]), ssh).status_code == 302
    project.refresh_from_db()
    assert project.deploy_key == KEY and project.token == ""
    page = client.get(reverse("admin:projects_project_change", args=[project.pk])).content.decode()
    assert "PRIVATE KEY" not in page.replace("PRIVATE KEY-----", "") and "b3BlbnNzaC1rZXktdjEAAAAA" not in page
    cleared = {**ssh, "deploy_key": "", "clear_credentials": "on"}
    assert client.post(reverse("admin:projects_project_change", args=[project.pk]), cleared).status_code == 302
    project.refresh_from_db()
    assert not project.token_encrypted and not project.deploy_key_encrypted


def test_deploy_a_ref_creates_a_deploy_for_that_ref(client, staff, queued, django_capture_on_commit_callbacks):
    project = make_project(staff)
    url = reverse("admin:projects_project_deploy_ref", args=[project.pk])
    dialog = client.get(url, HTTP_HX_REQUEST="true")
    assert dialog.status_code == 200 and 'name="ref"' in dialog.content.decode() and 'value="main"' in dialog.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url, {"_form_submitted": "on", "ref": "v1.2"}, HTTP_HX_REQUEST="true")
    deploy = Deploy.objects.get()
    assert (deploy.ref, deploy.trigger, deploy.requested_by, deploy.status) == ("v1.2", Trigger.ADMIN, staff, "building")
    assert response.status_code == 204 and response["HX-Redirect"] == reverse("admin:projects_deploy_change", args=[deploy.pk])
    assert queued == [str(deploy.id)]


def test_deploy_a_ref_refuses_a_bad_ref_with_the_apis_message(client, staff, queued):
    project = make_project(staff)
    response = client.post(reverse("admin:projects_project_deploy_ref", args=[project.pk]),
                           {"_form_submitted": "on", "ref": "a..b"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and "Must not contain &#x27;..&#x27;" in response.content.decode()
    assert not Deploy.objects.exists() and not queued


def test_make_current_switches_the_current_version_via_the_service(client, staff, settings, tmp_path):
    settings.EGGS_DIR = tmp_path / "eggs"
    project = make_project(staff)
    old = make_version(project, "a" * 40, current=False, spiders=["products"])
    new = make_version(project, "b" * 40, current=True, spiders=["products", "detail"])
    page = client.get(reverse("admin:projects_project_change", args=[project.pk])).content.decode()
    make_current_url = reverse("admin:projects_projectversion_make_current_one", args=[old.pk])
    assert make_current_url in page  # the button on the project's version list
    response = client.post(make_current_url, {"_form_submitted": "on"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 204
    old.refresh_from_db()
    new.refresh_from_db()
    assert old.is_current and not new.is_current
    assert set(Spider.objects.filter(project=project, version__is_current=True).values_list("name", flat=True)) == {"products"}


def test_make_current_through_the_api_uses_the_same_service(api, user, settings, tmp_path):
    settings.EGGS_DIR = tmp_path / "eggs"
    project = make_project(user)
    old = make_version(project, "a" * 40, current=False)
    make_version(project, "b" * 40, current=True)
    response = api.post(f"/api/v1/projects/{project.pk}/versions/{old.version}/make-current")
    assert response.status_code == 200 and response.json()["version"] == old.version
    assert ProjectVersion.objects.get(is_current=True) == old
    assert api.post(f"/api/v1/projects/{project.pk}/versions/nope/make-current").status_code == 404
    old.egg_path.unlink()
    response = api.post(f"/api/v1/projects/{project.pk}/versions/{'b' * 40}/make-current")
    assert response.status_code == 200
    response = api.post(f"/api/v1/projects/{project.pk}/versions/{old.version}/make-current")
    assert response.status_code == 409 and response.json()["error"] == "conflict"


def test_delete_goes_through_the_service_guards(client, staff, api, user):
    from jobs.models import Run, RunStatus

    project = make_project(staff)
    spider = Spider.objects.create(project=project, name="products")
    run = Run.objects.create(owner=staff, deployed_spider=spider, project=project.scrapyd_name, spider="products",
                             status=RunStatus.RUNNING)
    response = client.post(reverse("admin:projects_project_delete", args=[project.pk]), {"post": "yes"}, follow=True)
    assert Project.objects.filter(pk=project.pk).exists()
    assert "Project shop has an active run; cancel it first" in response.content.decode()
    Run.objects.filter(pk=run.pk).update(status=RunStatus.SUCCEEDED)
    response = client.post(reverse("admin:projects_project_delete", args=[project.pk]), {"post": "yes"})
    assert response.status_code == 302 and not Project.objects.filter(pk=project.pk).exists()
    mine = make_project(user)
    assert api.delete(f"/api/v1/projects/{mine.pk}").status_code == 204
    assert not Project.objects.filter(pk=mine.pk).exists()


def test_deploy_page_shows_the_log_and_the_real_error_line(client, staff):
    project = make_project(staff)
    log = "\n".join([
        "[   0.0s] Deploying main of https://github.com/acme/shop.git",
        "[   2.0s] Listing spiders (scrapy list with settings shop.settings)",
        "[   3.1s]   | Traceback (most recent call last):",
        '[   3.1s]   |   File "/tmp/x/shop/spiders/products.py", line 2, in <module>',
        "[   3.1s]   |     import nothere",
        "[   3.1s]   | ModuleNotFoundError: No module named 'nothere'",
        "[   3.1s] Deploy failed: `scrapy list` failed (exit 1): the project or a spider does not import",
    ])
    deploy = Deploy.objects.create(project=project, ref="main", status=DeployStatus.FAILED, log=log,
                                   error="`scrapy list` failed (exit 1): the project or a spider does not import")
    assert deploy_cause(deploy) == "ModuleNotFoundError: No module named 'nothere'"
    page = client.get(reverse("admin:projects_deploy_change", args=[deploy.pk])).content.decode()
    assert "data-deploy-cause>ModuleNotFoundError: No module named &#x27;nothere&#x27;</code>" in page
    assert "<pre" in page and "Listing spiders" in page
    assert 'name="_save"' not in page  # a record: no Save buttons
    listing = client.get(reverse("admin:projects_deploy_changelist")).content.decode()
    assert "bg-red-100" in listing  # the failed status is a red label


def test_git_error_line_is_the_cause():
    log = "[   0.0s] Deploying v9 of x\n[   0.2s]   | git fetch failed (exit 128): fatal: couldn't find remote ref v9\n"
    assert log_cause(log) == "fatal: couldn't find remote ref v9"
    assert log_cause("[   0.0s] no detail here") == ""


def test_project_pages_answer(client, staff, settings, tmp_path):
    settings.EGGS_DIR = tmp_path / "eggs"
    project = make_project(staff)
    version = make_version(project, "c" * 40, current=True)
    Deploy.objects.create(project=project, ref="main", status=DeployStatus.SUCCEEDED, version=version, log="ok")
    for name in ("projects_project_changelist", "projects_deploy_changelist", "projects_projectversion_changelist",
                 "projects_spider_changelist", "projects_project_add"):
        assert client.get(reverse(f"admin:{name}")).status_code == 200, name
    assert client.get(reverse("admin:projects_projectversion_change", args=[version.pk])).status_code == 200
    assert client.get(reverse("admin:projects_spider_change", args=[Spider.objects.get().pk])).status_code == 200


def test_the_deploy_page_follows_a_building_deploy_only(client, staff):
    project = make_project(staff)
    building = Deploy.objects.create(project=project, ref="main")
    page = client.get(reverse("admin:projects_deploy_change", args=[building.pk])).content.decode()
    assert 'hx-trigger="every 2s"' in page and 'data-deploy-status="building"' in page
    done = Deploy.objects.create(project=project, ref="main", status=DeployStatus.SUCCEEDED, log="[   0.0s] ok")
    page = client.get(reverse("admin:projects_deploy_change", args=[done.pk])).content.decode()
    assert 'hx-trigger="every 2s"' not in page and 'data-deploy-status="succeeded"' in page
