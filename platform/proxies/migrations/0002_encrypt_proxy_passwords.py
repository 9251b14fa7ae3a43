"""Proxy passwords stored encrypted (core.encryption): existing clear-text passwords are encrypted."""

from django.db import migrations, models

from core import encryption
from proxies.models import PASSWORD_PURPOSE


def encrypt_passwords(apps, schema_editor):
    Proxy = apps.get_model("proxies", "Proxy")
    for proxy in Proxy.objects.exclude(password=""):
        proxy.password_encrypted = encryption.encrypt(proxy.password, purpose=PASSWORD_PURPOSE)
        proxy.save(update_fields=["password_encrypted"])


def decrypt_passwords(apps, schema_editor):
    Proxy = apps.get_model("proxies", "Proxy")
    for proxy in Proxy.objects.exclude(password_encrypted=""):
        proxy.password = encryption.decrypt(proxy.password_encrypted, purpose=PASSWORD_PURPOSE)
        proxy.save(update_fields=["password"])


class Migration(migrations.Migration):

    dependencies = [
        ("proxies", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="proxy",
            name="password_encrypted",
            field=models.TextField(blank=True, editable=False, help_text="The password, encrypted"),
        ),
        migrations.RunPython(encrypt_passwords, decrypt_passwords),
        migrations.RemoveField(
            model_name="proxy",
            name="password",
        ),
    ]
