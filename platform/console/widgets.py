"""Form fields the console shares: a list as one value per line, a mapping as `name=value` lines.

They only convert between text and the value the API's serializers expect; the serializers judge it.
"""

from __future__ import annotations

from typing import Any

from django import forms
from unfold.widgets import UnfoldAdminTextareaWidget


class LinesWidget(UnfoldAdminTextareaWidget):
    """A textarea showing a list one item per line (URLs, labels)."""

    def __init__(self, attrs: dict[str, Any] | None = None, rows: int = 4) -> None:
        super().__init__(attrs={"rows": rows, "spellcheck": "false", "class": "font-mono", **(attrs or {})})

    def format_value(self, value: Any) -> str:
        if isinstance(value, (list, tuple)):
            return "\n".join(str(item) for item in value)
        return "" if value is None else str(value)


class LinesField(forms.CharField):
    """A list of strings, one per line; blank lines are dropped."""

    widget = LinesWidget

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        super().__init__(strip=False, **kwargs)

    def prepare_value(self, value: Any) -> Any:
        return LinesWidget().format_value(value)

    def to_python(self, value: Any) -> list[str]:
        if isinstance(value, (list, tuple)):
            return [str(item) for item in value]
        return [line.strip() for line in (value or "").splitlines() if line.strip()]


class PairsField(forms.CharField):
    """A mapping of names to strings, one `name=value` per line (spider arguments)."""

    widget = LinesWidget

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        super().__init__(strip=False, **kwargs)

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, dict):
            return "\n".join(f"{name}={item}" for name, item in value.items())
        return value

    def to_python(self, value: Any) -> dict[str, str]:
        if isinstance(value, dict):
            return value
        pairs: dict[str, str] = {}
        for number, line in enumerate((value or "").splitlines(), start=1):
            if not line.strip():
                continue
            name, sep, item = line.partition("=")
            if not sep or not name.strip():
                raise forms.ValidationError(f"Line {number}: write name=value")
            pairs[name.strip()] = item.strip()
        return pairs
