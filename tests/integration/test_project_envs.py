"""Projects with their own dependencies: deployed from git, run on a real Scrapyd node in their environment.

Packages come from a wheel folder the session downloads once (the node and the worker use it with
--no-index), so builds never reach an index. The node is this module's own, started with the
platform's runner as `make run` starts the local one.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest
import requests

from nodes.models import Node
from projects import tasks
from projects.eggs import build_egg
from projects.environments import with_lock
from projects.models import ProjectVersion
from projects.services import deploy_egg
from tests.integration.test_projects_deploys import create_project, deploy
from tests.integration.test_spider_runs import wait_run
from tests.projects_support import base_files, commit, make_repo, start_requests_spider_module
from tests.support import start_scrapyd

pytestmark = pytest.mark.integration

OLD_SCRAPY = ["scrapy==2.11.2", "w3lib==2.1.2", "twisted==24.3.0"]  # 2.11 needs a w3lib and Twisted of its time


@pytest.fixture(scope="session")
def wheels(tmp_path_factory):
    """The wheels of every lock these tests resolve, downloaded once (a package the node lacks, two Scrapys)."""
    import scrapy

    folder = tmp_path_factory.mktemp("wheels")
    for group in (["python-slugify", f"scrapy=={scrapy.__version__}"], OLD_SCRAPY):
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--only-binary", ":all:", "-d", str(folder), *group],
                       check=True, capture_output=True, timeout=300)
    return folder


@pytest.fixture(scope="module")
def envs_scrapyd(services_dir, wheels):
    process, url = start_scrapyd("scrapyd-envs", services_dir, extra_env={
        "CRAWLENV_FIND_LINKS": str(wheels), "CRAWLENV_NO_INDEX": "on", "CRAWLENV_USE_PIP_CONFIG": "off",
    })
    yield url
    process.stop()


@pytest.fixture
def envs_node(transactional_db, envs_scrapyd, settings, wheels, tmp_path_factory) -> Node:
    settings.PROJECT_ENVS_FIND_LINKS = [str(wheels)]
    settings.PROJECT_ENVS_NO_INDEX = True
    settings.PROJECT_ENVS_DIR = tmp_path_factory.getbasetemp() / "worker-envs"
    return Node.objects.create(name="node-envs", url=envs_scrapyd, slots=4)


@pytest.fixture
def eager(monkeypatch):
    monkeypatch.setattr(tasks.deploy, "delay", lambda deploy_id: tasks.deploy(deploy_id))


def slug_spider() -> str:
    return textwrap.dedent('''\
        import scrapy
        from slugify import slugify  # not installed on the node: only in the project's environment


        class SlugSpider(scrapy.Spider):
            name = "slugs"

            def __init__(self, base_url="http://127.0.0.1/", **kwargs):
                super().__init__(**kwargs)
                self.base_url = base_url

            async def start(self):
                yield scrapy.Request(self.base_url + "product1.html")

            def parse(self, response):
                yield {"url": response.url, "slug": slugify(response.css("h1::text").get()), "scrapy": scrapy.__version__}
        ''')


def project_files(spiders: dict[str, str], requirements: str) -> dict[str, str]:
    files = {k: v for k, v in base_files().items() if not k.startswith("shop/spiders/")}
    files["shop/spiders/__init__.py"] = ""
    files.update(spiders)
    files["requirements.txt"] = requirements
    return files


def node_usage(node: Node) -> dict:
    return requests.get(f"{node.url}logs/_environments.json", timeout=10).json()


def test_project_with_a_package_the_node_lacks(api, eager, platform, envs_node, site, tmp_path):
    with pytest.raises(ImportError):
        __import__("slugify")
    path, first = make_repo(tmp_path / "slugs", project_files({"shop/spiders/slugs.py": slug_spider()}, "python-slugify\n"))
    project = create_project(api, path, name="slugs")
    started = time.monotonic()
    done = deploy(api, project)
    build_seconds = time.monotonic() - started
    first_log = done["log"]
    assert done["status"] == "succeeded", done["log"]
    assert "Resolving requirements.txt" in done["log"] and "python-slugify==" in done["log"]
    assert "Node node-envs built the environment" in done["log"]
    version = ProjectVersion.objects.get(project_id=project["id"], version=first)
    assert "python-slugify==" in version.lock and "--hash=sha256:" in version.lock and len(version.lock_sha256) == 64
    assert version.environment_sizes["node-envs"] > 1_000_000
    shown = api.get(f"/api/v1/projects/{project['id']}").json()["current_version"]["environment"]
    assert shown["lock_sha256"] == version.lock_sha256 and shown["disk_bytes"] == version.environment_sizes
    assert any(p.startswith("python-slugify==") for p in shown["packages"])
    assert node_usage(envs_node)["environments_bytes"] >= version.environment_sizes["node-envs"]

    run = api.post("/api/v1/runs", {"spider_name": "slugs", "arguments": {"base_url": site.url}}, format="json")
    assert run.status_code == 202, run.json()
    result = wait_run(api, run.json()["run_id"])
    assert result["status"] == "succeeded" and result["close_reason"] == "finished", result
    items = api.get(f"/api/v1/runs/{result['run_id']}/items").json()["results"]
    assert [(i["slug"], i["url"]) for i in items] == [("widget-1", f"{site.url}product1.html")]

    # A second version with the same lock: the environment is reused on the worker and on the node.
    before = node_usage(envs_node)["environments"]
    second = commit(path, {"shop/spiders/slugs.py": slug_spider().replace('"slugs"', '"slugs"  # v2')}, "v2")
    started = time.monotonic()
    done = deploy(api, project)
    reuse_seconds = time.monotonic() - started
    assert done["status"] == "succeeded", done["log"]
    assert done["version"] == second
    assert "reused (no build)" in done["log"] and "already had the environment (reused, no build)" in done["log"]
    assert "built in" not in done["log"]
    after = node_usage(envs_node)["environments"]
    assert set(after) == set(before)  # no new environment
    assert ProjectVersion.objects.get(project_id=project["id"], version=second).lock_sha256 == version.lock_sha256
    print(f"\nfirst deploy (resolve + build) {build_seconds:.2f} s, second (reuse) {reuse_seconds:.2f} s")
    print(first_log, done["log"], sep="\n----\n")  # shown with -s: where a deploy's time goes


def test_project_pinning_an_older_scrapy(api, eager, platform, envs_node, site, tmp_path):
    legacy = start_requests_spider_module("legacy", ["product1.html"]).replace(
        '"title": response.css("h1::text").get()', '"title": response.css("h1::text").get(), "scrapy": scrapy.__version__')
    path, _ = make_repo(tmp_path / "old", project_files({"shop/spiders/legacy.py": legacy}, "\n".join(OLD_SCRAPY) + "\n"))
    project = create_project(api, path, name="old")
    done = deploy(api, project)
    assert done["status"] == "succeeded", done["log"]
    assert "scrapy==2.11.2" in done["log"]
    # A project without requirements in the same session runs on the node's packages (covered by
    # test_spider_runs); this one's environment holds the older Scrapy.
    assert api.get(f"/api/v1/projects/{project['id']}").json()["current_version"]["environment"]["packages"]

    run = api.post("/api/v1/runs", {"spider_name": "legacy", "arguments": {"base_url": site.url}}, format="json")
    result = wait_run(api, run.json()["run_id"])
    assert result["status"] == "succeeded" and result["close_reason"] == "finished", result
    assert result["items_scraped"] == 1 and result["stats"]["item_scraped_count"] == 1
    items = api.get(f"/api/v1/runs/{result['run_id']}/items").json()["results"]
    assert [(i["scrapy"], i["title"].strip()) for i in items] == [("2.11.2", "Widget 1")]


def test_broken_locks_fail_the_deploy_and_keep_the_current_version(api, eager, envs_node, tmp_path, settings):
    path, first = make_repo(tmp_path / "broken", project_files({"shop/spiders/slugs.py": slug_spider()}, "python-slugify\n"))
    project = create_project(api, path, name="broken")
    assert deploy(api, project)["status"] == "succeeded"

    commit(path, {"requirements.txt": "python-slugify==0.0.1\n"}, "a version nobody has")
    done = deploy(api, project)
    assert done["status"] == "failed" and done["error"] == "requirements.txt cannot be resolved", done["log"]
    assert "python-slugify" in done["log"] and "The current version is unchanged" in done["log"]

    # A lock that resolves but does not install (its hash is wrong): uv's own error, nothing current changes.
    current = ProjectVersion.objects.get(project_id=project["id"], is_current=True)
    assert current.version == first
    bad = current.lock.replace(current.lock.split("--hash=sha256:")[1][:64], "0" * 64, 1)
    egg = with_lock(build_egg(path / "shop", name="broken", settings_module="shop.settings", data_files=True).data, bad)
    failed = deploy_egg(project=current.project, version="bad-lock", egg_bytes=egg)
    assert failed.status == "failed" and failed.error == "The environment does not install", failed.log
    assert "hash" in failed.log.lower()
    assert ProjectVersion.objects.get(project_id=project["id"], is_current=True).version == first
    assert not ProjectVersion.objects.filter(project_id=project["id"], version="bad-lock").exists()

    # A lock the worker installs but the node cannot (a package only the worker's index has): the
    # node's addversion.json fails with uv's error, the egg is withdrawn, nothing current changes.
    worker_only = tmp_path / "worker-only"
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--only-binary", ":all:", "--no-deps", "-d",
                    str(worker_only), "six"], check=True, capture_output=True, timeout=300)
    settings.PROJECT_ENVS_FIND_LINKS = [*settings.PROJECT_ENVS_FIND_LINKS, str(worker_only)]
    commit(path, {"requirements.txt": "python-slugify\nsix\n"}, "a package the node's index lacks")
    done = deploy(api, project)
    assert done["status"] == "failed" and done["error"] == "Scrapyd on node node-envs refused the egg", done["log"]
    assert "six was not found" in done["log"] and "The current version is unchanged" in done["log"]  # uv's words
    assert ProjectVersion.objects.get(project_id=project["id"], is_current=True).version == first
    listed = requests.get(f"{envs_node.url}listversions.json", params={"project": project["scrapyd_name"]}, timeout=10)
    assert listed.json()["versions"] == [first]

