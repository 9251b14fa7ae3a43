"""The console opens for a signed-in operator: the index and every model's list answer, without errors."""

from __future__ import annotations

import pytest
from django.contrib import admin

pytestmark = pytest.mark.integration


def test_every_admin_list_opens(console):
    console.goto("/admin/")
    for model in admin.site._registry:
        meta = model._meta
        console.goto(f"/admin/{meta.app_label}/{meta.model_name}/")
