"""Proxy passwords: encrypted at rest, write-only in the admin, decrypted only for the crawl's URL."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from core import encryption
from jobs.crawl import RunConfigError, spider_arguments
from jobs.models import Job
from jobs.services import start_run
from projects import credentials
from proxies.models import PASSWORD_PURPOSE, CountryAccess, Proxy, ProxyPasswordUnreadable

pytestmark = pytest.mark.django_db

# A short one, characters a URL's userinfo must escape, non-ASCII, and the longest the admin takes.
PASSWORDS = ["hunter2", "s3cret:@/?#%", "pässwörd ünïcode", "x" * 200]


def stored_password(proxy: Proxy) -> str:
    """The password column exactly as the database holds it."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT password_encrypted FROM proxies_proxy WHERE id = %s", [proxy.pk])
        return cursor.fetchone()[0]


@pytest.mark.parametrize("password", PASSWORDS)
def test_the_password_is_stored_encrypted_and_used_for_the_crawl(password: str) -> None:
    proxy = Proxy.objects.create(url="http://127.0.0.1:3128", username="user", password=password)
    stored = stored_password(proxy)
    assert stored and password not in stored
    assert proxy.has_password
    fresh = Proxy.objects.get(pk=proxy.pk)
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(fresh.url_with_credentials())
    assert (unquote(parts.username), unquote(parts.password), parts.port) == ("user", password, 3128)


def test_the_password_is_write_only_on_the_model() -> None:
    proxy = Proxy.objects.create(url="http://127.0.0.1:3128", username="user", password="s3cret")
    with pytest.raises(AttributeError, match="write-only"):
        proxy.password  # noqa: B018
    assert "s3cret" not in repr(Proxy.objects.values().get(pk=proxy.pk))
    proxy.password = ""
    proxy.save()
    assert not Proxy.objects.get(pk=proxy.pk).has_password and stored_password(proxy) == ""
    assert Proxy.objects.get(pk=proxy.pk).url_with_credentials() == "http://user:@127.0.0.1:3128"


def test_a_proxy_without_credentials_is_its_url() -> None:
    assert Proxy.objects.create(url="http://127.0.0.1:3128").url_with_credentials() == "http://127.0.0.1:3128"


def test_secrets_of_one_kind_cannot_be_read_as_another() -> None:
    """Each kind has its own key: a git token is not a proxy password, and back."""
    token = credentials.encrypt("ghp_token")
    with pytest.raises(encryption.SecretUnreadable):
        encryption.decrypt(token, purpose=PASSWORD_PURPOSE)
    proxy = Proxy.objects.create(url="http://127.0.0.1:3128", username="u", password="p")
    with pytest.raises(credentials.CredentialsUnreadable):
        credentials.decrypt(proxy.password_encrypted)
    assert credentials.decrypt(token) == "ghp_token"


def test_a_changed_secret_key_fails_the_dispatch_with_a_clear_reason(user, settings) -> None:
    Proxy.objects.create(url="http://127.0.0.1:3128", country="US", username="u", password="p")
    CountryAccess.objects.create(user=user, country="US", status=CountryAccess.Status.APPROVED)
    job = Job.objects.create(owner=user, name="j", source="https://example.com/",
                             proxy_config={"enabled": True, "geo_targeting": "US"})
    run = start_run(job=job)
    assert "u:p@127.0.0.1:3128" in spider_arguments(run)["proxies"]
    settings.SECRET_KEY = "another-secret-key-" + "x" * 40
    with pytest.raises(ProxyPasswordUnreadable):
        Proxy.objects.get().url_with_credentials()
    with pytest.raises(RunConfigError, match=r"password of proxy http://127.0.0.1:3128 cannot be read .*set it again"):
        spider_arguments(run)


# --- Admin: a password input that is always empty; blank keeps, a value replaces, a box removes ---


@pytest.fixture
def admin_client(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("root", "root@example.com", "pw"))
    return client


def form(proxy: Proxy, **changes: object) -> dict[str, object]:
    data = {"url": proxy.url, "country": proxy.country, "username": proxy.username, "password": "", "enabled": "on"}
    return {**data, **changes}


@pytest.mark.parametrize("password", PASSWORDS)
def test_the_admin_pages_never_show_the_password(admin_client, password: str) -> None:
    proxy = Proxy.objects.create(url="http://127.0.0.1:3128", country="US", username="user", password=password)
    pages = [
        admin_client.get(f"/admin/proxies/proxy/{proxy.pk}/change/"),
        admin_client.get("/admin/proxies/proxy/"),
        admin_client.get("/admin/proxies/proxy/add/"),
    ]
    for page in pages:
        assert page.status_code == 200
        html = page.content.decode()
        for secret in {password, password[1:], stored_password(proxy)}:
            assert secret not in html.replace("http://127.0.0.1:3128", "")
    change = pages[0].content.decode()
    assert 'name="password"' in change and "A password is set." in change and 'name="clear_password"' in change


def test_the_admin_keeps_replaces_or_removes_the_password(admin_client) -> None:
    proxy = Proxy.objects.create(url="http://127.0.0.1:3128", country="US", username="user", password="old")
    url = f"/admin/proxies/proxy/{proxy.pk}/change/"
    assert admin_client.post(url, form(proxy, country="de")).status_code == 302  # blank: kept
    proxy.refresh_from_db()
    assert proxy.country == "DE" and proxy.url_with_credentials() == "http://user:old@127.0.0.1:3128"
    assert admin_client.post(url, form(proxy, password="new pw")).status_code == 302
    assert Proxy.objects.get(pk=proxy.pk).url_with_credentials() == "http://user:new%20pw@127.0.0.1:3128"
    both = admin_client.post(url, form(proxy, password="x", clear_password="on"))
    assert both.status_code == 200 and "Either set a new password or remove it" in both.content.decode()
    assert admin_client.post(url, form(proxy, clear_password="on")).status_code == 302
    assert not Proxy.objects.get(pk=proxy.pk).has_password


def test_the_admin_adds_a_proxy_with_an_encrypted_password(admin_client) -> None:
    data = {"url": "http://127.0.0.1:3128", "country": "us", "username": "user", "password": "s3cret", "enabled": "on"}
    assert admin_client.post("/admin/proxies/proxy/add/", data).status_code == 302
    proxy = Proxy.objects.get()
    assert "s3cret" not in stored_password(proxy)
    assert proxy.url_with_credentials() == "http://user:s3cret@127.0.0.1:3128"


# --- The data migration encrypts the passwords stored before it ---------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_migration_encrypts_existing_passwords_and_back() -> None:
    executor = MigrationExecutor(connection)
    executor.migrate([("proxies", "0001_initial")])
    with connection.cursor() as cursor:
        for n, password in enumerate(["", *PASSWORDS]):
            cursor.execute(
                "INSERT INTO proxies_proxy (url, country, username, password, enabled, created_at)"
                " VALUES (%s, '', %s, %s, TRUE, CURRENT_TIMESTAMP)",
                [f"http://127.0.0.{n + 1}:3128", f"user{n}", password],
            )
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate([("proxies", "0002_encrypt_proxy_passwords")])
    with connection.cursor() as cursor:
        cursor.execute("SELECT url, password_encrypted FROM proxies_proxy ORDER BY id")
        rows = cursor.fetchall()
    assert rows[0][1] == ""
    for (_url, stored), password in zip(rows[1:], PASSWORDS, strict=True):
        assert password not in stored
        assert encryption.decrypt(stored, purpose=PASSWORD_PURPOSE) == password
    # And back: the clear-text column comes back with the same values.
    executor = MigrationExecutor(connection)
    executor.migrate([("proxies", "0001_initial")])
    with connection.cursor() as cursor:
        cursor.execute("SELECT password FROM proxies_proxy ORDER BY id")
        assert [row[0] for row in cursor.fetchall()] == ["", *PASSWORDS]
        cursor.execute("DELETE FROM proxies_proxy")
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
