"""Field coverage of a run: the share of items where each field is present and not empty.

Computed column by column with Arrow compute over the item store's segments, batch by batch: no
item becomes a Python object, and memory stays flat with the run's size.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from exports.itemstore import ItemStore, is_json_field

_EMPTY_JSON = ["", '""', "[]", "{}", "null"]


def _filled(column: pa.Array, field: pa.Field) -> int:
    """How many values of a column are present and not empty."""
    type_ = column.type
    if pa.types.is_null(type_):
        return 0
    if is_json_field(field):
        empty = pc.is_in(pc.utf8_trim_whitespace(column), pa.array(_EMPTY_JSON))
        filled = pc.and_(pc.is_valid(column), pc.invert(empty))
        return pc.sum(filled.fill_null(False)).as_py() or 0
    if pa.types.is_string(type_) or pa.types.is_large_string(type_):
        filled = pc.greater(pc.utf8_length(pc.utf8_trim_whitespace(column)), 0)
    elif pa.types.is_list(type_) or pa.types.is_large_list(type_):
        filled = pc.greater(pc.list_value_length(column), 0)
    elif pa.types.is_struct(type_):
        # An empty object of a segment shares the struct type with its fields all null: not filled.
        filled = pc.is_valid(column)
        children = [pc.is_valid(pc.struct_field(column, [i])) for i in range(type_.num_fields)]
        if children:
            any_child = children[0]
            for child in children[1:]:
                any_child = pc.or_(any_child, child)
            filled = pc.and_(filled, any_child)
    else:
        filled = pc.is_valid(column)
    return pc.sum(filled.fill_null(False)).as_py() or 0


def field_coverage(store: ItemStore) -> tuple[int, dict[str, float]]:
    """(items, {field: share from 0 to 1}) over every segment of the store."""
    total = 0
    counts: dict[str, int] = {}
    schema = store.schema()
    for name in schema.names:
        counts[name] = 0
    for batch in store.batches():
        total += batch.num_rows
        for index, field in enumerate(batch.schema):
            counts[field.name] += _filled(batch.column(index), field)
    if not total:
        return 0, {}
    return total, {name: round(count / total, 4) for name, count in counts.items()}
