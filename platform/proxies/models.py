"""The proxy pool. Credentials never leave the platform except to the crawl that uses them.

A proxy's password is write-only: stored encrypted (core.encryption), never shown by the admin or
any API, and decrypted only to build the URL a crawl connects through (url_with_credentials).
"""

from __future__ import annotations

from urllib.parse import quote, urlsplit, urlunsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from core import encryption

from .countries import validate_country

# Part of the key proxy passwords are encrypted with: changing it makes stored passwords unreadable.
PASSWORD_PURPOSE = "proxies-password"


class ProxyPasswordUnreadable(encryption.SecretUnreadable):
    """A proxy's stored password cannot be decrypted with the current SECRET_KEY."""


def validate_proxy_url(value: str) -> None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.path not in ("", "/"):
        raise ValidationError("A proxy URL is http(s)://host:port, without credentials (set them apart)")


class Proxy(models.Model):
    """An HTTP proxy with the country its exits are in."""

    url = models.CharField(max_length=300, validators=[validate_proxy_url], help_text="http://host:port")
    country = models.CharField(max_length=2, blank=True, validators=[validate_country],
                               help_text="ISO 3166-1 alpha-2 code of the exit country, e.g. US (blank: any country)")
    renders = models.BooleanField(
        default=True, help_text="Usable for rendered pages (Chromium); off: static fetches and crawls only"
    )
    username = models.CharField(max_length=200, blank=True)
    password_encrypted = models.TextField(blank=True, editable=False, help_text="The password, encrypted")
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        verbose_name_plural = "proxies"

    def __str__(self) -> str:
        return f"{self.url} ({self.country or 'any'})"

    def save(self, *args, **kwargs) -> None:
        self.country = self.country.upper()
        super().save(*args, **kwargs)

    password = encryption.write_only(field="password_encrypted", purpose=PASSWORD_PURPOSE)

    @property
    def has_password(self) -> bool:
        return bool(self.password_encrypted)

    def _decrypted_password(self) -> str:
        try:
            return encryption.decrypt(self.password_encrypted, purpose=PASSWORD_PURPOSE)
        except encryption.SecretUnreadable:
            raise ProxyPasswordUnreadable(
                f"The password of proxy {self.url} cannot be read (SECRET_KEY changed?): set it again in the admin"
            ) from None

    def url_with_credentials(self) -> str:
        """The URL a crawl connects through (Scrapy and Playwright read credentials from it)."""
        if not self.username:
            return self.url
        parts = urlsplit(self.url)
        userinfo = f"{quote(self.username, safe='')}:{quote(self._decrypted_password(), safe='')}"
        netloc = f"{userinfo}@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def pool(country: str | None = None, *, render: bool = False) -> list[Proxy]:
    """Enabled proxies, of one exit country if given (that render pages, if `render`)."""
    proxies = Proxy.objects.filter(enabled=True)
    if country:
        proxies = proxies.filter(country=country.upper())
    if render:
        proxies = proxies.filter(renders=True)
    return list(proxies)


class CountryAccess(models.Model):
    """A user's access to the pool's proxies of one country: asked for, then approved or rejected by an
    administrator (with a note the user sees). Approving then rejecting withdraws it: new runs stop using it.

    One row per user and country: asking again after a rejection puts the same row back to pending.
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        APPROVED = "approved"
        REJECTED = "rejected"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="country_access")
    country = models.CharField(max_length=2, validators=[validate_country])
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    reason = models.CharField(max_length=1000, blank=True, help_text="Why the user asks (their words)")
    note = models.CharField(max_length=1000, blank=True, help_text="The administrator's note, shown to the user")
    requested_at = models.DateTimeField(default=timezone.now)
    decided_at = models.DateTimeField(null=True, blank=True)
    was_approved = models.BooleanField(default=False, help_text="Approved before being rejected: withdrawn")
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["country"]
        verbose_name_plural = "country access"
        constraints = [models.UniqueConstraint(fields=["user", "country"], name="one_country_access_per_user")]

    def __str__(self) -> str:
        return f"{self.user} {self.country} ({self.status})"
