"""The job form of the console, driven by the API's JobSerializer.

Its fields are made from the serializer's writable fields (nested objects such as `render_config`
become one form field per key, `render_config__wait_strategy`), so a field the API gains appears here
without a change. What the operator typed is turned into the API's request body and judged by the
serializer alone; its errors, keyed by path (`queries[0].query`, `source[2]`), land on the matching
field or inline row. Saving goes through jobs.services, as the API's does.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from django import forms
from django.forms.models import BaseInlineFormSet
from rest_framework import serializers
from rest_framework.fields import empty
from unfold.widgets import (
    UnfoldAdminCheckboxSelectMultipleWidget,
    UnfoldAdminIntegerFieldWidget,
    UnfoldAdminSelectWidget,
    UnfoldAdminTextareaWidget,
    UnfoldAdminTextInputWidget,
    UnfoldBooleanSwitchWidget,
)

from console.widgets import LinesField, LinesWidget, PairsField
from core.errors import PlatformError, flatten_details
from projects.models import Spider

from ..models import Job, Query
from ..serializers import JobSerializer

SEP = "__"  # render_config.wait_strategy -> render_config__wait_strategy
# Fields given their own widget here, or edited elsewhere on the page (queries inline, schedule inline).
SPECIAL = {"source", "queries", "scheduling", "spider_id", "spider_name", "arguments"}
OWN_SECTION = {"render_config", "proxy_config"}
LABELS = {
    "render_config": "Rendering", "proxy_config": "Proxies", "item_selector": "Item selector", "follow": "Follow links",
}


def write_fields(serializer: serializers.Serializer) -> dict[str, serializers.Field]:
    return {name: field for name, field in serializer.fields.items() if not field.read_only}


def _label(name: str) -> str:
    return name.replace("_", " ").capitalize()


def _form_field(field: serializers.Field, label: str) -> forms.Field:
    """A form field for a serializer field; the serializer still does all the judging."""
    common: dict[str, Any] = {"required": False, "label": label, "help_text": field.help_text or ""}
    if isinstance(field, serializers.BooleanField):
        return forms.BooleanField(widget=UnfoldBooleanSwitchWidget, **common)
    if isinstance(field, serializers.ChoiceField):
        choices = [(key, str(value)) for key, value in field.choices.items()]
        if field.default is empty or field.allow_null:
            choices = [("", "—"), *choices]
        return forms.ChoiceField(choices=choices, widget=UnfoldAdminSelectWidget, **common)
    if isinstance(field, serializers.IntegerField):
        return forms.IntegerField(min_value=field.min_value, max_value=field.max_value,
                                  widget=UnfoldAdminIntegerFieldWidget, **common)
    if isinstance(field, (serializers.FloatField, serializers.DecimalField)):
        return forms.FloatField(widget=UnfoldAdminIntegerFieldWidget, **common)
    if isinstance(field, serializers.ListField) and isinstance(field.child, serializers.ChoiceField):
        return forms.MultipleChoiceField(choices=[(key, str(value)) for key, value in field.child.choices.items()],
                                         widget=UnfoldAdminCheckboxSelectMultipleWidget, **common)
    if isinstance(field, serializers.ListField):
        return LinesField(help_text=common["help_text"] or "One per line", label=label)
    if isinstance(field, serializers.DictField):
        return PairsField(help_text=common["help_text"] or "One name=value per line", label=label)
    if isinstance(field, serializers.JSONField):
        return BlankJSONField(widget=UnfoldAdminTextareaWidget(attrs={"rows": 3, "class": "font-mono"}), **common)
    return forms.CharField(strip=False, widget=UnfoldAdminTextInputWidget, **common)


class BlankJSONField(forms.JSONField):
    """JSON text for a value the API takes as JSON; nothing shows as empty, not as `null`."""

    def prepare_value(self, value: Any) -> Any:
        return "" if value is None else super().prepare_value(value)


def _default(field: serializers.Field, model_field_name: str | None) -> Any:
    if field.default is not empty:
        return field.get_default()
    if model_field_name:
        try:
            model_field = Job._meta.get_field(model_field_name)
        except Exception:  # noqa: BLE001 - not a model field
            return None
        return model_field.get_default() if model_field.has_default() else None
    return None


def generated_fields() -> dict[str, tuple[str, str | None, serializers.Field, forms.Field]]:
    """form field name -> (top-level key, nested key or None, serializer field, form field)."""
    found: dict[str, tuple[str, str | None, serializers.Field, forms.Field]] = {}
    for name, field in write_fields(JobSerializer()).items():
        if name in SPECIAL:
            continue
        if isinstance(field, serializers.Serializer) and not isinstance(field, serializers.ListSerializer):
            for key, sub in write_fields(field).items():
                # Keys shown in a section of their own keep their own label; others say whose they are.
                label = _label(key) if name in OWN_SECTION else f"{LABELS.get(name, _label(name))}: {key.replace('_', ' ')}"
                form_field = _form_field(sub, label)
                if key == "type" and field.allow_null:
                    form_field.help_text = f"Empty: no {LABELS.get(name, _label(name)).lower()}"
                form_field.initial = _default(sub, None)
                found[f"{name}{SEP}{key}"] = (name, key, sub, form_field)
        else:
            form_field = _form_field(field, _label(name))
            form_field.initial = _default(field, field.source if field.source != "*" else None)
            found[name] = (name, None, field, form_field)
    return found


def representation(job: Job) -> dict[str, Any]:
    """The writable fields of `job` as the API shows them (GET /jobs/{id})."""
    shown: dict[str, Any] = {}
    for name, field in write_fields(JobSerializer()).items():
        if name in ("queries", "scheduling", "spider_name"):
            continue
        if name == "spider_id":
            shown[name] = job.spider_id
            continue
        try:
            value = field.get_attribute(job)
            shown[name] = None if value is None else field.to_representation(value)
        except (AttributeError, KeyError, serializers.SkipField):
            continue
    return shown


class JobForm(forms.ModelForm):
    """A job as the API takes it; `api_body()` is the request body, `validate()` asks the serializer."""

    source = LinesField(
        label="Source URLs", widget=LinesWidget(rows=5),
        help_text="One URL per line: the pages to scrape (query jobs)",
    )
    spider = forms.ModelChoiceField(
        queryset=Spider.objects.select_related("project").order_by("project__name", "name"), required=False,
        widget=UnfoldAdminSelectWidget, help_text="A deployed spider to run instead of the query spider (spider jobs)",
    )
    arguments = PairsField(label="Spider arguments", help_text="One name=value per line (spider jobs)")

    request_user = None  # the signed-in user (set by JobAdmin.get_form): whom the API would judge for

    class Meta:
        model = Job
        fields = ["owner"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.generated = generated_fields()
        for name, (_, _, _, field) in self.generated.items():
            self.fields[name] = field
        self.validated: dict[str, Any] | None = None
        if not self.instance._state.adding:
            shown = representation(self.instance)
            for name, (top, key, _, _) in self.generated.items():
                value = shown.get(top)
                if key is not None:
                    value = (value or {}).get(key) if isinstance(value, dict) else None
                self.initial[name] = value
            self.initial["source"] = self.instance.source_urls
            self.initial["spider"] = self.instance.spider_id
            self.initial["arguments"] = self.instance.arguments or {}
        # The query rows (inline) find this form through the job they belong to.
        self.instance._console_job_form = self

    def _post_clean(self) -> None:
        """The model is not validated here: the serializer does it, with the API's messages."""

    def api_body(self, queries: list[dict[str, Any]]) -> dict[str, Any]:
        """The request body the API would get for what the form holds."""
        data = self.cleaned_data
        body: dict[str, Any] = {}
        nested: dict[str, dict[str, Any]] = {}
        for name, (top, key, field, _) in self.generated.items():
            value = data.get(name)
            if key is not None:
                nested.setdefault(top, {})
                if value in ("", None, []) and not isinstance(field, serializers.BooleanField):
                    if isinstance(field, serializers.CharField) and field.allow_blank:
                        nested[top][key] = ""
                    elif field.allow_null:
                        nested[top][key] = None
                    continue
                nested[top][key] = value
                continue
            if value in ("", None) and field.allow_null:
                body[top] = None  # emptied: null, as the API takes it (e.g. time_limit_s: the platform's)
                continue
            if value in ("", None) and not field.required:
                continue
            if value == [] and not getattr(field, "allow_empty", True):
                continue
            body[top] = value
        fields = JobSerializer().fields
        for top, values in nested.items():
            blank = not any(v not in ("", None, False, []) for v in values.values())
            if blank and fields[top].allow_null:
                body[top] = None
            elif not (blank and not fields[top].required):  # an optional object left empty: not given
                body[top] = values
        body["source"] = data.get("source") or []
        body["queries"] = queries
        if data.get("spider"):
            body["spider_id"] = str(data["spider"].pk)
            body["arguments"] = data.get("arguments") or {}
        elif data.get("arguments"):
            body["arguments"] = data["arguments"]
        return body

    def validate(self, queries: list[dict[str, Any]]) -> dict[str, str]:
        """Judge the body with the API's serializer; returns its errors by path (empty when valid)."""
        owner = self.cleaned_data.get("owner") or (self.instance.owner if self.instance.owner_id else self.request_user)
        context = {"request": SimpleNamespace(user=owner)}
        instance = None if self.instance._state.adding else self.instance
        serializer = JobSerializer(instance=instance, data=self.api_body(queries), context=context)
        try:
            if serializer.is_valid():
                self.validated = dict(serializer.validated_data)
                return {}
            return flatten_details(serializer.errors)
        except PlatformError as exc:
            return dict(exc.details or {}) or {"non_field_errors": exc.message}

    def field_for(self, path: str) -> str | None:
        """The form field that shows the error at `path`, if one does."""
        top = path.split("[")[0].split(".")[0]
        if top in ("source", "arguments"):
            return top
        if top in ("spider_id", "spider_name"):
            return "spider"
        flat = path.replace(".", SEP)
        if flat in self.fields:
            return flat
        return top if top in self.fields else None


QUERY_RESULTS = [("first", "First match"), ("all", "All, a list"), ("join", "All, joined")]


class QueryForm(forms.ModelForm):
    """One query row: name, type, query, and what the item gets (first match, a list, or joined)."""

    name = forms.CharField(required=False, strip=False, widget=UnfoldAdminTextInputWidget(attrs={"size": 14}))
    type = forms.ChoiceField(choices=[("xpath", "XPath"), ("css", "CSS"), ("regex", "Regex")], required=False,
                             widget=UnfoldAdminSelectWidget(attrs={"class": "min-w-32"}))
    query = forms.CharField(required=False, strip=False,
                            widget=UnfoldAdminTextInputWidget(attrs={"class": "font-mono", "size": 36}))
    result = forms.ChoiceField(choices=QUERY_RESULTS, initial="first", required=False,
                               widget=UnfoldAdminSelectWidget(attrs={"class": "min-w-32"}))
    separator = forms.CharField(required=False, strip=False, help_text="Empty: a space",
                                widget=UnfoldAdminTextInputWidget(attrs={"size": 4}))
    position = forms.IntegerField(required=False)  # hidden: the console numbers dragged rows
    validate = BlankJSONField(required=False, label="Rules", help_text='What a valid value is, e.g. {"required": true}',
                               widget=UnfoldAdminTextInputWidget(attrs={"class": "font-mono", "size": 18}))

    class Meta:
        model = Query
        fields = ["name", "type", "query", "position"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        query = self.instance
        if query.pk:
            self.initial["result"] = "all" if query.all else "join" if query.join else "first"
            self.initial["separator"] = query.join if isinstance(query.join, str) else ""
            self.initial["validate"] = query.validate or None

    def _post_clean(self) -> None:
        """Validated as a whole job by the serializer, not row by row."""

    def as_query(self) -> dict[str, Any]:
        data = self.cleaned_data
        query: dict[str, Any] = {"name": data.get("name", ""), "type": data.get("type", ""), "query": data.get("query", "")}
        if data.get("result") == "all":
            query["all"] = True
        elif data.get("result") == "join":
            query["join"] = data.get("separator") or True
        if data.get("validate") not in (None, "", {}):
            query["validate"] = data["validate"]
        return query


class QueryFormSet(BaseInlineFormSet):
    """The query rows; their clean() judges the whole job (form and rows) through the serializer."""

    def query_forms(self) -> list[QueryForm]:
        """The rows that make the job's queries, in order (not deleted, not left empty).

        Saved rows can be dragged (the console numbers their `position` 0, 1, ...); new rows follow them.
        """
        rows = []
        for index, form in enumerate(self.forms):
            if not hasattr(form, "cleaned_data") or (self.can_delete and self._should_delete_form(form)):
                continue
            if form.instance.pk is None:
                if form.has_changed():
                    rows.append(((1, 0, index), form))
                continue
            position = form.cleaned_data.get("position")
            rows.append(((0, index if position is None else position, index), form))
        return [form for _, form in sorted(rows, key=lambda row: row[0])]

    def queries(self) -> list[dict[str, Any]]:
        return [form.as_query() for form in self.query_forms()]

    def validate_unique(self) -> None:
        """Names are the serializer's to judge (`Duplicate query name`)."""

    def clean(self) -> None:
        job_form: JobForm | None = getattr(self.instance, "_console_job_form", None)
        if job_form is None:
            return
        job_form.is_valid()  # cleaned once; judged by the serializer even if a field did not parse
        rows = self.query_forms()
        errors = job_form.validate([form.as_query() for form in rows])
        own: list[str] = []
        for path, message in errors.items():
            if path == "queries" or path.startswith("queries["):
                own.extend(self._place(rows, path, message))
                continue
            field = job_form.field_for(path)
            if field == "source" and path.startswith("source["):
                index = int(path[len("source["):].split("]")[0])
                urls = job_form.cleaned_data.get("source") or []
                message = f"{urls[index]}: {message}" if index < len(urls) else message
            elif field is None and path != "non_field_errors":
                message = f"{path}: {message}"
            if field is not None and field not in job_form.errors:
                job_form.add_error(field, message)
            elif field is not None:
                job_form.errors[field].append(message)
            else:
                job_form.add_error(None, message)
        if errors and not own:
            own.append("The job was not saved: see the errors above")
        if own:
            raise forms.ValidationError(own)

    @staticmethod
    def _place(rows: list[QueryForm], path: str, message: str) -> list[str]:
        """Puts `queries[i].key`'s message on row i; returns what belongs to the rows as a whole."""
        if not path.startswith("queries["):
            return [message]
        index_text, _, key = path[len("queries["):].partition("]")
        index = int(index_text)
        key = key.lstrip(".")
        if index >= len(rows):
            return [f"{path}: {message}"]
        key = key.split(".")[0].split("[")[0]
        field = {"join": "result", "all": "result"}.get(key, key)
        rows[index].add_error(field if field in rows[index].fields else None, message)
        return []

    def save(self, commit: bool = True) -> list:
        """The queries were saved with the job by jobs.services (create_job / update_job)."""
        self.new_objects, self.changed_objects, self.deleted_objects = [], [], []
        return []
