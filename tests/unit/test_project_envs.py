"""Project environments without a network: requirements found, locks carried in eggs, keys, pruning."""

from __future__ import annotations

import os
import time
import zipfile
from io import BytesIO

from crawlenv.envs import Options, env_key, prune, read_lock, usage
from projects.environments import LOCK_MEMBER, egg_lock, find_requirements, lock_log_name, packages, with_lock

LOCK = "python-slugify==9.2.0 \\\n    --hash=sha256:" + "a" * 64 + "\ntext-unidecode==1.3 \\\n    --hash=sha256:" + "b" * 64 + "\n"


def egg(members: dict[str, str]) -> bytes:
    buffer = BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, text in members.items():
            zf.writestr(name, text)
    return buffer.getvalue()


def test_requirements_are_found_beside_scrapy_cfg_then_at_the_top(tmp_path):
    project = tmp_path / "sub"
    project.mkdir()
    assert find_requirements(tmp_path, project) is None
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")  # no dependencies: not a source
    assert find_requirements(tmp_path, project) is None
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\ndependencies = ['python-slugify']\n")
    assert find_requirements(tmp_path, project).label == "pyproject.toml"
    (project / "requirements.txt").write_text("python-slugify\n")
    assert find_requirements(tmp_path, project).label == "sub/requirements.txt"


def test_the_lock_travels_in_the_egg_and_replaces_an_older_one():
    plain = egg({"EGG-INFO/PKG-INFO": "Name: x\n", "x/__init__.py": ""})
    assert egg_lock(plain) is None and read_lock(plain) is None
    locked = with_lock(with_lock(plain, "old==1\n"), LOCK)
    names = zipfile.ZipFile(BytesIO(locked)).namelist()
    assert names.count(LOCK_MEMBER) == 1 and "x/__init__.py" in names
    assert egg_lock(locked) == read_lock(locked) == LOCK  # the platform and the node read the same member
    assert packages(LOCK) == ["python-slugify==9.2.0", "text-unidecode==1.3"]
    assert len(lock_log_name(LOCK)) == 24


def test_one_environment_per_lock_and_python():
    assert env_key(LOCK) == env_key(LOCK)
    assert env_key(LOCK) != env_key(LOCK + "\n")


def test_index_flags_never_build_sdists_unless_allowed(tmp_path):
    flags = Options(envs_dir=tmp_path, find_links=["/w"], no_index=True).index_args()
    assert flags == ["--no-index", "--find-links", "/w", "--only-binary", ":all:"]
    assert "--only-binary" not in Options(envs_dir=tmp_path, no_index=True, allow_sdist=True).index_args()


def test_prune_keeps_used_and_recent_environments(tmp_path):
    for key in ("kept", "recent", "old"):
        (tmp_path / key).mkdir()
        (tmp_path / key / ".ready").write_text("{}")
        (tmp_path / key / "requirements.lock").write_text(LOCK)
        (tmp_path / key / ".used").write_text(str(time.time() - (10_000 if key != "recent" else 10)))
    os.utime(tmp_path / "old", (0, 0))
    removed = prune(tmp_path, keep={"kept"}, grace=3600, log=lambda line: None)
    assert removed == ["old"]
    assert sorted(usage(tmp_path)["environments"]) == ["kept", "recent"]
    assert usage(tmp_path)["environments"]["kept"]["lock_sha256"]


def test_node_settings_come_from_scrapyd_conf_and_crawlenv_variables(tmp_path, monkeypatch):
    from crawlenv.runner import node_options

    conf = {"dbs_dir": str(tmp_path / "dbs"), "envs_find_links": "/a /b", "envs_no_index": "on"}

    class Config:
        def get(self, name, default=""):
            return conf.get(name, default)

    options = node_options(Config())
    assert options.envs_dir == tmp_path / "envs" and options.find_links == ["/a", "/b"] and options.no_index
    assert not options.allow_sdist
    monkeypatch.setenv("CRAWLENV_FIND_LINKS", "/c")
    monkeypatch.setenv("CRAWLENV_ALLOW_SDIST", "yes")
    options = node_options(Config())
    assert options.find_links == ["/c"] and options.allow_sdist


def test_pip_configuration_keeps_pips_meaning_for_extra_indexes(tmp_path, monkeypatch):
    import crawlenv.envs as envs

    monkeypatch.setattr(envs, "pip_config", lambda python: {"index-url": "https://i/simple", "extra-index-url": "file:///x"})
    flags = Options(envs_dir=tmp_path).index_args()
    assert flags[:2] == ["--index-strategy", "unsafe-best-match"]
    assert flags[2:4] == ["--default-index", "https://i/simple"] and flags[4:6] == ["--index", "file:///x"]


def test_an_egg_without_a_lock_runs_on_the_nodes_packages_without_pkg_resources(tmp_path):
    """crawlenv.runner does what scrapyd.runner does for such an egg (on sys.path, its settings), more cheaply."""
    import subprocess
    import sys

    from django.conf import settings

    from crawlenv.runner import plain_egg_settings

    spider = "import scrapy\n\nclass One(scrapy.Spider):\n    name = 'one'\n"
    members = {
        "demo/__init__.py": "", "demo/settings.py": "SPIDER_MODULES = ['demo.spiders']\n",
        "demo/spiders/__init__.py": "", "demo/spiders/one.py": spider,
        "EGG-INFO/PKG-INFO": "Metadata-Version: 1.0\nName: demo\nVersion: 1\n",
        "EGG-INFO/entry_points.txt": "[scrapy]\nsettings = demo.settings\n",
    }
    (tmp_path / "eggs" / "demo").mkdir(parents=True)
    path = tmp_path / "eggs" / "demo" / "v1.egg"
    path.write_bytes(egg(members))
    assert plain_egg_settings(path) == "demo.settings"
    namespaced = tmp_path / "ns.egg"
    namespaced.write_bytes(egg({**members, "EGG-INFO/namespace_packages.txt": "demo\n"}))
    assert plain_egg_settings(namespaced) is None  # left to Scrapyd's runner (pkg_resources declares them)
    (tmp_path / "bad.egg").write_bytes(b"not a zip")
    assert plain_egg_settings(tmp_path / "bad.egg") is None

    (tmp_path / "scrapyd.conf").write_text(f"[scrapyd]\neggs_dir = {tmp_path / 'eggs'}\nlogs_dir =\n")
    env = {k: v for k, v in os.environ.items() if k not in ("SCRAPY_SETTINGS_MODULE", "VIRTUAL_ENV")}
    env.update(PYTHONPATH=str(settings.REPO_DIR / "deploy" / "node"), SCRAPY_PROJECT="demo", SCRAPYD_EGG_VERSION="v1")
    code = "import runpy, sys; sys.argv = ['runner', 'list']; runpy.run_module('crawlenv.runner', run_name='__main__')"
    probe = f"import atexit, sys; atexit.register(lambda: print('pkg_resources' in sys.modules, file=sys.stderr)); {code}"
    proc = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["one"]
    assert proc.stderr.strip().splitlines()[-1] == "False"
