"""Deploys from real git repositories to real Scrapyd nodes: versions, rollback, failures, later nodes."""

from __future__ import annotations

import io
import zipfile

import pytest
import requests
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command

from nodes.models import Node
from nodes.services import sync_node
from projects import tasks
from projects.eggs import build_egg
from projects.models import Deploy, Project, ProjectVersion
from projects.services import current_version, deploy_egg, ensure_versions
from tests.projects_support import commit, make_repo, spider_module
from tests.support import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def eager(monkeypatch):
    """Deploy tasks run in this process as soon as the request commits."""
    monkeypatch.setattr(tasks.deploy, "delay", lambda deploy_id: tasks.deploy(deploy_id))


@pytest.fixture
def repo(tmp_path):
    return make_repo(tmp_path / "shop")


def node_versions(node: Node, project: str) -> list[str]:
    return requests.get(f"{node.url}listversions.json", params={"project": project}, timeout=10).json()["versions"]


def create_project(api, url, name="shop") -> dict:
    response = api.post("/api/v1/projects", {"name": name, "git_url": str(url), "branch": "main"}, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def deploy(api, project: dict, ref: str | None = None) -> dict:
    response = api.post(f"/api/v1/projects/{project['id']}/deploy", {"ref": ref} if ref else {}, format="json")
    assert response.status_code == 202, response.json()
    detail = api.get(f"/api/v1/projects/{project['id']}/deploys/{response.json()['id']}").json()
    assert detail["status"] in ("succeeded", "failed")
    return detail


def spiders_of(api, project: dict) -> dict[str, str]:
    return {s["name"]: s["repo_path"] for s in api.get(f"/api/v1/projects/{project['id']}").json()["spiders"]}


def test_deploys_list_spiders_and_roll_back(api, eager, repo, node_a, settings):
    path, first = repo
    project = create_project(api, path)
    done = deploy(api, project)
    assert done["status"] == "succeeded", done["log"]
    assert done["commit"] == first and done["version"] == first and done["duration"] > 0
    assert sorted(done["spiders"]) == ["index", "products"]
    assert "scrapy.cfg" in done["log"] and "now current" in done["log"]
    assert spiders_of(api, project) == {"index": "shop/spiders/index.py", "products": "shop/spiders/products.py"}
    scrapyd_name = project["scrapyd_name"]
    assert node_versions(node_a, scrapyd_name) == [first]
    listed = requests.get(f"{node_a.url}listspiders.json", params={"project": scrapyd_name, "_version": first}, timeout=10)
    assert sorted(listed.json()["spiders"]) == ["index", "products"]
    egg = zipfile.ZipFile(io.BytesIO((settings.EGGS_DIR / scrapyd_name / f"{first}.egg").read_bytes()))
    assert not [n for n in egg.namelist() if n.startswith(("tests/", "README", "scrapy.cfg"))]

    second = commit(path, {"shop/spiders/detail.py": spider_module("detail", "product2.html")}, "third spider")
    done = deploy(api, project)
    assert done["status"] == "succeeded", done["log"]
    assert done["commit"] == second and len(spiders_of(api, project)) == 3
    assert sorted(node_versions(node_a, scrapyd_name)) == sorted([first, second])

    done = deploy(api, project, ref=first)  # rollback to the first commit
    assert done["status"] == "succeeded", done["log"]
    body = api.get(f"/api/v1/projects/{project['id']}").json()
    assert body["current_version"]["version"] == first and set(spiders_of(api, project)) == {"index", "products"}
    assert current_version(Project.objects.get(pk=project["id"])).version == first
    assert ProjectVersion.objects.filter(project_id=project["id"]).count() == 2
    assert api.get(f"/api/v1/projects/{project['id']}/deploys").json()["count"] == 3
    assert not any(django_settings.DEPLOY_TMP_DIR.iterdir())


def test_deploy_through_the_worker(platform, api, repo, node_a):
    path, first = repo
    project = create_project(api, path)
    response = api.post(f"/api/v1/projects/{project['id']}/deploy", {"ref": first[:10]}, format="json")
    assert response.status_code == 202 and response.json()["status"] == "building"
    url = f"/api/v1/projects/{project['id']}/deploys/{response.json()['id']}"
    done = wait_until(lambda: (d := api.get(url).json())["status"] != "building" and d, timeout=90, what="the deploy")
    assert done["status"] == "succeeded", done["log"]
    assert done["commit"] == first and sorted(done["spiders"]) == ["index", "products"]
    assert node_versions(node_a, project["scrapyd_name"]) == [first]


def good_then(api, path, files: dict, node_a=None) -> tuple[dict, dict, str]:
    """Deploy the good first commit, then a commit with `files`; returns the project, the failed deploy, the good SHA."""
    project = create_project(api, path)
    good = deploy(api, project)
    assert good["status"] == "succeeded", good["log"]
    commit(path, files, "breaking change")
    failed = deploy(api, project)
    assert failed["status"] == "failed"
    assert "The current version is unchanged" in failed["log"]
    body = api.get(f"/api/v1/projects/{project['id']}").json()
    assert body["current_version"]["version"] == good["commit"]
    assert set(spiders_of(api, project)) == {"index", "products"}
    assert not any(django_settings.DEPLOY_TMP_DIR.iterdir())
    return project, failed, good["commit"]


def test_repository_without_scrapy_cfg_fails(api, eager, repo, node_a):
    _, failed, good = good_then(api, repo[0], {"scrapy.cfg": None})
    assert "No scrapy.cfg" in failed["error"] and "No scrapy.cfg" in failed["log"]


def test_project_that_fails_to_import_fails(api, eager, repo, node_a):
    project, failed, good = good_then(api, repo[0], {"shop/settings.py": "import no_such_module\n"})
    assert "scrapy list" in failed["error"]
    assert "no_such_module" in failed["log"]
    assert node_versions(node_a, project["scrapyd_name"]) == [good]


def test_spider_that_raises_at_import_fails(api, eager, repo, node_a):
    broken = "raise RuntimeError('spider exploded at import')\n"
    project, failed, good = good_then(api, repo[0], {"shop/spiders/boom.py": broken})
    assert "Traceback" in failed["log"] and "spider exploded at import" in failed["log"]
    assert node_versions(node_a, project["scrapyd_name"]) == [good]


def test_egg_scrapyd_rejects_fails_and_is_withdrawn(api, eager, repo, node_a, node_b):
    # Fine on the platform and on node-a; Scrapyd on node-b (run from its folder "scrapyd-b") cannot list it.
    settings_py = (repo[0] / "shop/settings.py").read_text() + (
        "import os\nif os.path.basename(os.getcwd()) == 'scrapyd-b':\n    raise ImportError('refused on node b')\n"
    )
    project, failed, good = good_then(api, repo[0], {"shop/settings.py": settings_py})
    assert "node-b refused the egg" in failed["error"]
    assert "refused on node b" in failed["log"] and "Removed version" in failed["log"]
    for node in (node_a, node_b):
        assert node_versions(node, project["scrapyd_name"]) == [good]


def test_uploaded_egg_becomes_a_version_and_a_junk_egg_fails(user, repo, node_a):
    from projects.services import create_project as make

    project = make(owner=user, name="uploaded")
    egg = build_egg(repo[0] / "shop", name=project.scrapyd_name, settings_module="shop.settings", data_files=True)
    lines: list[str] = []
    done = deploy_egg(project=project, version="1700000000", egg_bytes=egg.data, log=lines.append)
    assert done.status == "succeeded", done.log
    assert done.source == "upload" and sorted(done.spiders) == ["index", "products"] and lines
    assert current_version(project).version == "1700000000"
    for junk in (b"not a zip", _zip_without_metadata()):
        failed = deploy_egg(project=project, version="1700000001", egg_bytes=junk)
        assert failed.status == "failed" and "not a Scrapy project egg" in failed.error
    assert current_version(project).version == "1700000000"
    assert node_versions(node_a, project.scrapyd_name) == ["1700000000"]


def _zip_without_metadata() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("shop/__init__.py", "")
    return buffer.getvalue()


def test_node_added_later_receives_current_versions(api, eager, repo, node_a, scrapyd_b):
    project = create_project(api, repo[0])
    good = deploy(api, project)
    assert good["status"] == "succeeded"
    late = Node.objects.create(name="node-late", url=scrapyd_b, slots=4)
    sync_node(late)
    assert good["commit"] in node_versions(late, project["scrapyd_name"])
    assert ensure_versions(late) == []  # known there now: nothing to upload


def test_deploy_command_prints_progress(repo, user, transactional_db):
    from projects.services import create_project as make

    make(owner=user, name="shop", git_url=str(repo[0]))
    out = io.StringIO()
    call_command("deploy", "shop", "--user", user.username, stdout=out)
    text = out.getvalue()
    assert "Checked out commit" in text and "Spiders: " in text and f"Deployed {repo[1]}" in text
    commit(repo[0], {"scrapy.cfg": None})
    with pytest.raises(CommandError, match="No scrapy.cfg"):
        call_command("deploy", "shop", stdout=io.StringIO())
    assert Deploy.objects.filter(status="failed").count() == 1


def test_git_itself_refuses_what_validation_would(tmp_path, settings):
    """Second line of defence: even a URL that slipped past validation cannot run a transport helper."""
    from projects.gitclient import GitClient, GitError

    marker = tmp_path / "pwned"
    for url in (f"ext::sh -c touch% {marker}", "fd::0", f"--upload-pack=touch {marker}"):
        work = tmp_path / f"work-{abs(hash(url))}"
        work.mkdir()
        with pytest.raises(GitError):
            GitClient(work, log=print).fetch(url=url, ref="main")
    settings.GIT_ALLOW_LOCAL = False
    work = tmp_path / "work-local"
    work.mkdir()
    with pytest.raises(GitError):
        GitClient(work, log=print).fetch(url=f"file://{tmp_path}", ref="main")
    assert not marker.exists()


def test_size_and_time_limits_fail_the_deploy(api, eager, repo, node_a, settings):
    project = create_project(api, repo[0])
    settings.GIT_MAX_REPO_BYTES = 2000
    done = deploy(api, project)
    assert done["status"] == "failed" and "GIT_MAX_REPO_BYTES" in done["log"]
    settings.GIT_MAX_REPO_BYTES = 10**9
    settings.GIT_CLONE_TIMEOUT = 0.01
    done = deploy(api, project)
    assert done["status"] == "failed" and "GIT_CLONE_TIMEOUT" in done["log"]
    assert not ProjectVersion.objects.exists() and not any(django_settings.DEPLOY_TMP_DIR.iterdir())
