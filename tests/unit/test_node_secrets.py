"""Scrapyd node passwords: encrypted at rest, write-only in the admin and the API, decrypted only for the client.

The client authenticating to a real Scrapyd with them is in tests/integration/test_node_auth.py.
"""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from core import encryption
from core.errors import NodeUnavailable
from nodes.client import ScrapydClient
from nodes.models import PASSWORD_PURPOSE, Node, NodePasswordUnreadable
from nodes.services import probe
from proxies.models import PASSWORD_PURPOSE as PROXY_PASSWORD_PURPOSE
from tests.conftest import make_client

pytestmark = pytest.mark.django_db

# A short one, characters basic auth and URLs care about, leading and trailing spaces, non-Latin-1 text,
# and the longest the admin and the API take.
PASSWORDS = ["hunter2", "s3cret:@/?#%&=+", "  spaced  ", "pässwörd ünïcode 密码", "x" * 200]


def stored_password(node: Node) -> str:
    """The password column exactly as the database holds it."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT password_encrypted FROM nodes_node WHERE id = %s", [node.pk])
        return cursor.fetchone()[0]


def secrets_of(node: Node, password: str) -> set[str]:
    """What no page or response may contain: the password, a part of it, and its stored form."""
    return {password, password.strip(), password[1:], stored_password(node)} - {""}


def make_node(password: str = "s3cret", **fields: object) -> Node:
    return Node.objects.create(**{"name": "n1", "url": "http://127.0.0.1:9/", "username": "scrapy", **fields},
                               password=password)


# --- The model --------------------------------------------------------------------------------


@pytest.mark.parametrize("password", PASSWORDS)
def test_the_password_is_stored_encrypted_and_given_to_the_client(password: str) -> None:
    node = make_node(password)
    stored = stored_password(node)
    assert stored and password not in stored and password.strip() not in stored
    fresh = Node.objects.get(pk=node.pk)
    assert fresh.has_password and fresh.basic_auth() == ("scrapy", password)
    # Scrapyd compares UTF-8 bytes (requests would send a str as Latin-1, or fail beyond it).
    assert ScrapydClient.for_node(fresh).auth == (b"scrapy", password.encode())


def test_the_password_is_write_only_on_the_model() -> None:
    node = make_node("s3cret")
    with pytest.raises(AttributeError, match="write-only"):
        node.password  # noqa: B018
    assert "s3cret" not in repr(Node.objects.values().get(pk=node.pk))
    node.password = ""
    node.save()
    fresh = Node.objects.get(pk=node.pk)
    assert not fresh.has_password and stored_password(node) == "" and fresh.basic_auth() == ("scrapy", "")


def test_a_node_without_a_user_name_sends_no_credentials() -> None:
    node = make_node("", username="")
    assert node.basic_auth() is None and ScrapydClient.for_node(node).auth is None


def test_node_and_proxy_passwords_have_keys_of_their_own() -> None:
    stored = stored_password(make_node("s3cret"))
    with pytest.raises(encryption.SecretUnreadable):
        encryption.decrypt(stored, purpose=PROXY_PASSWORD_PURPOSE)
    assert encryption.decrypt(stored, purpose=PASSWORD_PURPOSE) == "s3cret"


def test_a_changed_secret_key_makes_the_node_unavailable_saying_why(settings) -> None:
    node = make_node("s3cret")
    settings.SECRET_KEY = "another-secret-key-" + "x" * 40
    with pytest.raises(NodePasswordUnreadable, match=r"password of node n1 cannot be read .*set it again"):
        ScrapydClient.for_node(node)
    # Every caller handles an unreachable node: the health check records the reason, no one gets a 5xx.
    with pytest.raises(NodeUnavailable):
        probe(node)
    node.refresh_from_db()
    assert "password of node n1 cannot be read" in node.last_error


# --- Admin: a password input that is always empty; blank keeps, a value replaces, a box removes ---


@pytest.fixture
def admin_client(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("root", "root@example.com", "pw"))
    return client


def form(node: Node, **changes: object) -> dict[str, object]:
    data = {"name": node.name, "url": node.url, "username": node.username, "password": "", "slots": node.slots,
            "enabled": "on"}
    return {**data, **changes}


@pytest.mark.parametrize("password", PASSWORDS)
def test_the_admin_pages_never_show_the_password(admin_client, password: str) -> None:
    node = make_node(password)
    pages = {
        "change": admin_client.get(f"/admin/nodes/node/{node.pk}/change/"),
        "list": admin_client.get("/admin/nodes/node/"),
        "add": admin_client.get("/admin/nodes/node/add/"),
        "refused change": admin_client.post(f"/admin/nodes/node/{node.pk}/change/", form(node, slots="x")),
    }
    for name, page in pages.items():
        assert page.status_code == 200, name
        html = page.content.decode()
        for secret in secrets_of(node, password):
            assert secret not in html, (name, secret)
        assert 'name="password_encrypted"' not in html
    change = pages["change"].content.decode()
    assert 'type="password" name="password"' in change and 'value="' not in change.split('name="password"')[1][:80]
    assert "A password is set." in change and 'name="clear_password"' in change
    assert "No password is set." in pages["add"].content.decode()
    assert 'name="clear_password"' not in pages["add"].content.decode()  # nothing to remove yet


def test_the_admin_keeps_replaces_or_removes_the_password(admin_client) -> None:
    node = make_node("old")
    url = f"/admin/nodes/node/{node.pk}/change/"
    assert admin_client.post(url, form(node, slots=3)).status_code == 302  # blank: kept
    node.refresh_from_db()
    assert node.slots == 3 and node.basic_auth() == ("scrapy", "old")
    assert admin_client.post(url, form(node, password=" new pw ")).status_code == 302
    assert Node.objects.get(pk=node.pk).basic_auth() == ("scrapy", " new pw ")  # not stripped
    both = admin_client.post(url, form(node, password="x", clear_password="on"))
    assert both.status_code == 200 and "Either set a new password or remove it" in both.content.decode()
    assert Node.objects.get(pk=node.pk).basic_auth() == ("scrapy", " new pw ")
    assert admin_client.post(url, form(node, clear_password="on")).status_code == 302
    assert not Node.objects.get(pk=node.pk).has_password
    change = admin_client.get(url).content.decode()
    assert "No password is set." in change and 'name="clear_password"' not in change


def test_the_admin_adds_a_node_with_an_encrypted_password(admin_client) -> None:
    data = {"name": "n2", "url": "http://127.0.0.1:9/", "username": "scrapy", "password": "s3cret", "slots": 2,
            "enabled": "on"}
    assert admin_client.post("/admin/nodes/node/add/", data).status_code == 302
    node = Node.objects.get(name="n2")
    assert "s3cret" not in stored_password(node) and node.basic_auth() == ("scrapy", "s3cret")


@pytest.mark.parametrize("username", ["a:b", "tab\there", "new\nline"])
def test_the_admin_refuses_a_user_name_basic_auth_cannot_carry(admin_client, username: str) -> None:
    data = {"name": "n3", "url": "http://127.0.0.1:9/", "username": username, "password": "p", "slots": 2}
    page = admin_client.post("/admin/nodes/node/add/", data)
    assert page.status_code == 200 and "no colon and no control characters" in page.content.decode()
    assert not Node.objects.filter(name="n3").exists()


# --- The staff API: the password is accepted, never returned -------------------------------------


@pytest.fixture
def staff_api(django_user_model):
    return make_client(django_user_model.objects.create_user("staff", is_staff=True))


def assert_no_secret(body: object, node: Node, password: str) -> None:
    text = repr(body)
    assert "'password'" not in text and "password_encrypted" not in text
    for secret in secrets_of(node, password):
        assert secret not in text


@pytest.mark.parametrize("password", PASSWORDS)
def test_the_api_takes_the_password_and_never_returns_it(staff_api, password: str) -> None:
    created = staff_api.post("/api/v1/nodes", {"name": "n1", "url": "http://127.0.0.1:9", "username": "scrapy",
                                               "password": password}, format="json")
    assert created.status_code == 201, created.json()
    node = Node.objects.get()
    assert node.basic_auth() == ("scrapy", password) and password not in stored_password(node)
    responses = [
        created,
        staff_api.get("/api/v1/nodes"),
        staff_api.get(f"/api/v1/nodes/{node.pk}"),
        staff_api.patch(f"/api/v1/nodes/{node.pk}", {"slots": 2}, format="json"),
        staff_api.put(f"/api/v1/nodes/{node.pk}", {"name": "n1", "url": "http://127.0.0.1:9/"}, format="json"),
        staff_api.patch(f"/api/v1/nodes/{node.pk}", {"password": password}, format="json"),
    ]
    for response in responses:
        assert response.status_code == 200 or response is created, response.json()
        assert_no_secret(response.json(), node, password)
    assert staff_api.get(f"/api/v1/nodes/{node.pk}").json()["has_password"] is True
    assert Node.objects.get().basic_auth() == ("scrapy", password)  # omitted by PATCH and PUT: kept


def test_the_api_replaces_and_removes_the_password(staff_api) -> None:
    node = make_node("old")
    assert staff_api.patch(f"/api/v1/nodes/{node.pk}", {"password": "new"}, format="json").status_code == 200
    assert Node.objects.get().basic_auth() == ("scrapy", "new")
    removed = staff_api.patch(f"/api/v1/nodes/{node.pk}", {"password": ""}, format="json")
    assert removed.status_code == 200 and removed.json()["has_password"] is False
    assert stored_password(node) == ""


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"password": "x" * 201}, "password"),
        ({"password": "nul\x00byte"}, "password"),
        ({"username": "a:b"}, "username"),
        ({"password_encrypted": "gAAAA"}, "password_encrypted"),
        ({"has_password": False, "password": ["a"]}, "password"),
    ],
)
def test_the_api_refuses_what_cannot_be_stored_or_sent(staff_api, body: dict, path: str) -> None:
    node = make_node("old")
    response = staff_api.patch(f"/api/v1/nodes/{node.pk}", body, format="json")
    assert response.status_code == 400, response.json()
    assert response.json()["error"] == "validation_error" and path in response.json()["details"]
    assert Node.objects.get().basic_auth() == ("scrapy", "old")


def test_the_api_stays_staff_only(api) -> None:
    node = make_node("old")
    assert api.get(f"/api/v1/nodes/{node.pk}").status_code == 403
    assert api.patch(f"/api/v1/nodes/{node.pk}", {"password": "new"}, format="json").status_code == 403
    assert Node.objects.get().basic_auth() == ("scrapy", "old")


# --- registernode: the password from the environment or a prompt, never the command line -------


def test_registernode_takes_the_password_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("SCRAPYD_PASSWORD", "pässwörd 密码")
    out = io.StringIO()
    call_command("registernode", "n5", "http://127.0.0.1:9", "--username", "scrapy", stdout=out)
    node = Node.objects.get(name="n5")
    assert node.basic_auth() == ("scrapy", "pässwörd 密码") and "pässwörd" not in stored_password(node)
    assert "user scrapy, password set" in out.getvalue() and "pässwörd" not in out.getvalue()
    monkeypatch.delenv("SCRAPYD_PASSWORD")
    call_command("registernode", "n5", "http://127.0.0.1:9", "--slots", "2", stdout=io.StringIO())
    assert Node.objects.get(name="n5").basic_auth() == ("scrapy", "pässwörd 密码")  # kept


def test_registernode_refuses_what_it_cannot_use(monkeypatch) -> None:
    monkeypatch.delenv("SCRAPYD_PASSWORD", raising=False)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # not a terminal: nothing to prompt at
    with pytest.raises(CommandError, match=r"needs the password in \$SCRAPYD_PASSWORD"):
        call_command("registernode", "n6", "http://127.0.0.1:9", "--username", "scrapy")
    monkeypatch.setenv("SCRAPYD_PASSWORD", "p")
    with pytest.raises(CommandError, match="no colon"):
        call_command("registernode", "n6", "http://127.0.0.1:9", "--username", "a:b")
    assert not Node.objects.filter(name="n6").exists()


# --- The data migration encrypts the passwords stored before it ---------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_migration_encrypts_existing_passwords_and_back() -> None:
    executor = MigrationExecutor(connection)
    executor.migrate([("nodes", "0001_initial")])
    with connection.cursor() as cursor:
        for n, password in enumerate(["", *PASSWORDS]):
            cursor.execute(
                "INSERT INTO nodes_node (name, url, username, password, slots, enabled, builtin_version, last_error,"
                " created_at) VALUES (%s, %s, %s, %s, 1, TRUE, '', '', CURRENT_TIMESTAMP)",
                [f"n{n}", f"http://127.0.0.{n + 1}:6800/", f"user{n}", password],
            )
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate([("nodes", "0002_encrypt_node_passwords")])
    with connection.cursor() as cursor:
        cursor.execute("SELECT password_encrypted FROM nodes_node ORDER BY id")
        rows = [row[0] for row in cursor.fetchall()]
    assert rows[0] == ""
    for stored, password in zip(rows[1:], PASSWORDS, strict=True):
        assert password not in stored
        assert encryption.decrypt(stored, purpose=PASSWORD_PURPOSE) == password
    # And back: the clear-text column comes back with the same values.
    executor = MigrationExecutor(connection)
    executor.migrate([("nodes", "0001_initial")])
    with connection.cursor() as cursor:
        cursor.execute("SELECT password FROM nodes_node ORDER BY id")
        assert [row[0] for row in cursor.fetchall()] == ["", *PASSWORDS]
        cursor.execute("DELETE FROM nodes_node")
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
