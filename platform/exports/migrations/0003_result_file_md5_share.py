"""Result files: MD5 beside SHA-256 (seed 003), and a per-file secret for share links."""

import hashlib
import secrets
from pathlib import Path

from django.conf import settings
from django.db import migrations, models

import exports.models

LIVE = ("pending", "enabled", "overuse")  # statuses whose file can still be downloaded, so shared


def md5_and_share_secrets(apps, schema_editor):
    """Files written before this migration: their MD5 from the local copy where there still is one (else
    it stays null: a backup-only file is not read back for it), and each live file its own share secret
    (AddField gave every row the same one)."""
    ResultFile = apps.get_model("exports", "ResultFile")
    for file in ResultFile.objects.only("id", "status", "local_name").iterator():
        md5 = None
        if file.local_name:
            digest = hashlib.md5(usedforsecurity=False)
            try:
                with open(Path(settings.EXPORT_DIR) / file.local_name, "rb") as fh:
                    for chunk in iter(lambda fh=fh: fh.read(1 << 20), b""):
                        digest.update(chunk)
                md5 = digest.hexdigest()
            except OSError:
                pass
        nonce = secrets.token_hex(16) if file.status in LIVE else ""
        ResultFile.objects.filter(pk=file.pk).update(md5=md5, share_nonce=nonce)


class Migration(migrations.Migration):

    dependencies = [
        ('exports', '0002_result_file_captures'),
    ]

    operations = [
        migrations.AddField(
            model_name='resultfile',
            name='md5',
            field=models.CharField(blank=True, editable=False, help_text="MD5, hex (seed 003's checksum); null until written, or for a file older than it with no local copy", max_length=32, null=True),
        ),
        migrations.AddField(
            model_name='resultfile',
            name='share_nonce',
            field=models.CharField(blank=True, default=exports.models.new_share_nonce, editable=False, help_text='Secret of the share link; a new one revokes the old link, empty: no link', max_length=32),
        ),
        migrations.RunPython(md5_and_share_secrets, migrations.RunPython.noop),
    ]
