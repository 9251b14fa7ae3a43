# A job's schedule and the link to its django-celery-beat entry.

import django.db.models.deletion
import django.utils.timezone
import uuid
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('django_celery_beat', '0019_alter_periodictasks_options'),
        ('jobs', '0003_spider_runs'),
    ]

    operations = [
        migrations.CreateModel(
            name='Schedule',
            fields=[
                ('id', models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                ('cron', models.CharField(blank=True, help_text='The cron expression, when given as one', max_length=200)),
                ('minutes', models.JSONField(blank=True, default=list, help_text='Minutes (0-59); empty: every minute')),
                ('hours', models.JSONField(blank=True, default=list, help_text='Hours (0-23); empty: every hour')),
                ('days', models.JSONField(blank=True, default=list, help_text='Days of the week (0 = Sunday); empty: every day')),
                ('days_of_month', models.JSONField(blank=True, default=list, help_text='Days of the month (1-31); empty: every day')),
                ('months', models.JSONField(blank=True, default=list, help_text='Months (1-12); empty: every month')),
                ('timezone', models.CharField(default='UTC', help_text='IANA time zone of the fields', max_length=64)),
                ('overlap', models.CharField(choices=[('skip', 'Skip the firing (recorded as a cancelled run)'), ('queue', 'Start the run anyway')], default='skip', help_text="What a firing does while the job's previous run is still going", max_length=8)),
                ('enabled', models.BooleanField(default=True, editable=False, help_text='Off while the job is paused')),
                ('armed_at', models.DateTimeField(default=django.utils.timezone.now, editable=False, help_text='Fire times count from here on')),
                ('last_fire_time', models.DateTimeField(blank=True, editable=False, null=True)),
                ('next_fire_time', models.DateTimeField(blank=True, editable=False, null=True)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('updated_at', models.DateTimeField(auto_now=True)),
                ('crontab', models.OneToOneField(blank=True, editable=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='job_schedule', to='django_celery_beat.crontabschedule')),
                ('job', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='schedule', to='jobs.job')),
                ('periodic_task', models.OneToOneField(blank=True, editable=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='job_schedule', to='django_celery_beat.periodictask')),
            ],
            options={
                'indexes': [models.Index(fields=['enabled', 'next_fire_time'], name='schedules_s_enabled_71231d_idx')],
            },
        ),
    ]
