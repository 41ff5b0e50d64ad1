"""Dataset adapters: how one raw record becomes the conversation the generate stage continues.

``generate.adapter``:

- ``auto`` (default): detect the fields — messages from ``messages`` / ``conversations`` / a
  ``prompt`` that is a list of messages (verl parquet), else a text field among PROMPT_FIELDS;
  ``messages_field`` / ``prompt_field`` / ``response_field`` override single fields.
- ``generic``: no detection; ``prompt_field`` (text, wrapped as a user turn) or ``messages_field``
  (a list of messages) must be set, ``response_field`` optionally names the reference.
- a dotted path ``package.module.Class`` (or ``package.module:Class``) to a subclass of
  :class:`DatasetAdapter`, built with ``generate.adapter_options`` as keyword arguments::

      from runners.generate.adapters import DatasetAdapter

      class MathAdapter(DatasetAdapter):
          def messages(self, record):
              return [{"role": "system", "content": self.options.get("system", "Think step by step.")},
                      {"role": "user", "content": record["problem"]}]

          def reference(self, record):
              return record.get("solution")
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from registry.errors import InputDataError, UsageError
from runners.generate.datasets import PromptRecord, _text, _tools, to_prompt_records

BUILTIN = ("auto", "generic")


class DatasetAdapter:
    """Base class of custom adapters. Override :meth:`messages` (required); :meth:`tools` and
    :meth:`reference` default to the auto adapter's detection (``tools`` / ``extra_info.tools``;
    none). Raise ``ValueError`` for a record you cannot use: it is reported with the file and the
    record's index. ``self.options`` holds ``generate.adapter_options``."""

    def __init__(self, **options: Any):
        self.options = options

    def messages(self, record: dict[str, Any]) -> list[dict[str, Any]]:
        """The conversation to continue: OpenAI-style messages ending with a user (or tool) turn."""
        raise NotImplementedError

    def tools(self, record: dict[str, Any]) -> list[dict] | None:
        """Tool schemas offered to the model (rendered by the chat template), or None."""
        return _tools(record)

    def reference(self, record: dict[str, Any]) -> str | None:
        """A reference answer, kept as ``reference_response`` in the output, or None."""
        return None


def adapt(records: list[Any], source: Path, spec: Any) -> list[PromptRecord]:
    """``records`` → PromptRecords through the adapter ``spec.adapter`` names."""
    name = getattr(spec, "adapter", "auto") or "auto"
    fields = {"messages_field": spec.messages_field, "prompt_field": spec.prompt_field,
              "response_field": spec.response_field}
    if name == "auto":
        return to_prompt_records(records, source, **fields)
    if name == "generic":
        if not (spec.prompt_field or spec.messages_field):
            raise UsageError("generate.adapter: generic needs generate.prompt_field or generate.messages_field "
                             "(or use adapter: auto to detect them)")
        return [_generic(i, r, source, **fields) for i, r in enumerate(records)]
    adapter = load_adapter(name, getattr(spec, "adapter_options", None) or {})
    return [_custom(adapter, i, r, source) for i, r in enumerate(records)]


def load_adapter(path: str, options: dict[str, Any]) -> DatasetAdapter:
    module_name, _, attr = path.replace(":", ".").rpartition(".")
    if not module_name:
        raise UsageError(f"generate.adapter: '{path}' is not auto, generic or a dotted path package.module.Class")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise UsageError(f"generate.adapter: cannot import '{path}' ({exc}); check the module path "
                         "(it must be importable from the project root)") from None
    if not (isinstance(cls, type) and issubclass(cls, DatasetAdapter)):
        raise UsageError(f"generate.adapter: '{path}' is not a subclass of runners.generate.adapters.DatasetAdapter")
    try:
        return cls(**options)
    except TypeError as exc:
        raise UsageError(f"generate.adapter_options: {path} does not accept them ({exc})") from None


def _generic(index, record, source, messages_field, prompt_field, response_field) -> PromptRecord:
    where = f"{source}: record {index}"
    if not isinstance(record, dict):
        raise InputDataError(f"{where}: expected an object, got {type(record).__name__}")
    if messages_field:  # the named list of messages; a final assistant turn becomes the reference
        one = to_prompt_records([record], source, messages_field=messages_field, response_field=response_field)[0]
        return PromptRecord(index, one.messages, one.tools, one.reference, one.original)
    value = record.get(prompt_field)
    if not isinstance(value, str):
        raise InputDataError(f"{where}: field '{prompt_field}' is missing or not text (fields: {sorted(record)}); "
                             "fix generate.prompt_field")
    reference = None
    if response_field:
        if response_field not in record:
            raise InputDataError(f"{where}: response field '{response_field}' is missing (fields: {sorted(record)})")
        reference = _text(record[response_field])
    return PromptRecord(index, [{"role": "user", "content": value}], _tools(record), reference, record)


def _custom(adapter: DatasetAdapter, index: int, record: Any, source: Path) -> PromptRecord:
    where = f"{source}: record {index}"
    name = type(adapter).__name__
    try:
        messages = adapter.messages(record)
        tools, reference = adapter.tools(record), adapter.reference(record)
    except (ValueError, KeyError, TypeError) as exc:
        raise InputDataError(f"{where}: adapter {name}: {type(exc).__name__}: {exc}") from None
    if not (isinstance(messages, list) and messages and all(isinstance(m, dict) and "role" in m for m in messages)):
        raise InputDataError(f"{where}: adapter {name}.messages() must return a non-empty list of "
                             "{'role', 'content'} messages")
    messages = [{**m, "content": _text(m.get("content"))} for m in messages]
    return PromptRecord(index, messages, tools, None if reference is None else _text(reference),
                        record if isinstance(record, dict) else {"record": record})
