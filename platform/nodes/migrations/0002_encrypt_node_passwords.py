"""Node passwords stored encrypted (core.encryption): existing clear-text passwords are encrypted."""

import nodes.models
from django.db import migrations, models

from core import encryption
from nodes.models import PASSWORD_PURPOSE


def encrypt_passwords(apps, schema_editor):
    Node = apps.get_model("nodes", "Node")
    for node in Node.objects.exclude(password=""):
        node.password_encrypted = encryption.encrypt(node.password, purpose=PASSWORD_PURPOSE)
        node.save(update_fields=["password_encrypted"])


def decrypt_passwords(apps, schema_editor):
    Node = apps.get_model("nodes", "Node")
    for node in Node.objects.exclude(password_encrypted=""):
        node.password = encryption.decrypt(node.password_encrypted, purpose=PASSWORD_PURPOSE)
        node.save(update_fields=["password"])


class Migration(migrations.Migration):

    dependencies = [
        ("nodes", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="node",
            name="password_encrypted",
            field=models.TextField(blank=True, editable=False, help_text="The basic-auth password, encrypted"),
        ),
        migrations.RunPython(encrypt_passwords, decrypt_passwords),
        migrations.RemoveField(
            model_name="node",
            name="password",
        ),
        migrations.AlterField(
            model_name="node",
            name="username",
            field=models.CharField(
                blank=True,
                help_text="Scrapyd basic-auth user, if set",
                max_length=200,
                validators=[nodes.models.validate_username],
            ),
        ),
    ]
