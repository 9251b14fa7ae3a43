# Runs fired by a schedule: the fire time (one run per job and fire time), the schedule, the overlap policy applied.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('jobs', '0003_spider_runs'),
        ('schedules', '0001_initial'),
    ]

    operations = [
        migrations.AddField(
            model_name='run',
            name='fire_time',
            field=models.DateTimeField(blank=True, editable=False, help_text="The schedule's fire time it is for", null=True),
        ),
        migrations.AddField(
            model_name='run',
            name='overlap_policy',
            field=models.CharField(blank=True, choices=[('skip', 'skip'), ('queue', 'queue')], editable=False, help_text="Set when the firing came while the job's previous run was still going: the policy applied", max_length=8),
        ),
        migrations.AddField(
            model_name='run',
            name='schedule',
            field=models.ForeignKey(blank=True, editable=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='runs', to='schedules.schedule'),
        ),
        migrations.AddConstraint(
            model_name='run',
            constraint=models.UniqueConstraint(condition=models.Q(('fire_time__isnull', False)), fields=('job', 'fire_time'), name='one_run_per_fire_time'),
        ),
    ]
