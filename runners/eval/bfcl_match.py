"""BFCL's AST matching rules for single-turn Python categories, ported from
``bfcl_eval/eval_checker/ast_eval/ast_checker.py`` (bfcl-eval 2026.3.23, gorilla repo).

Ground truth is a list of ``{function_name: {param: [allowed values]}}``. The rules kept from BFCL:
- an optional parameter has ``""`` among its allowed values (it may be omitted);
- every required parameter (from the function doc) must be present, no unknown parameter may be;
- ``parallel*`` categories accept the calls in any order (greedy one-to-one assignment, as BFCL);
  ``multiple*`` expects exactly one call; ``simple*`` exactly one call;
- an ``int`` is accepted where the doc says ``float``; otherwise the Python type must match exactly
  (``True`` is not an integer, ``5.0`` is not an integer);
- strings (also inside lists and dicts) are compared after BFCL's ``standardize_string``: lower-case,
  drop spaces and ``,./-_*^``, single quotes → double quotes;
- a value whose type differs from the doc but equals the type of the allowed answers is a
  "variable" (BFCL's escape hatch) and compared by plain membership.

Java/JavaScript categories (type converters), relevance and multi-turn are not ported: they are
checked by the real ``bfcl evaluate`` on the BFCL backend. Function names are compared verbatim
(BFCL's ``underscore_to_dot`` is a per-API-model quirk that does not apply to our own templates).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

PYTHON_TYPE_MAPPING: dict[str, type] = {
    "string": str, "integer": int, "float": float, "boolean": bool,
    "array": list, "tuple": list, "dict": dict, "any": str,
}
NESTED_TYPES = ("array", "tuple")  # BFCL checks one level of item types for these
SUPPORTED_PREFIXES = ("simple_python", "multiple", "parallel", "parallel_multiple", "live_simple",
                      "live_multiple", "live_parallel", "live_parallel_multiple")


@dataclass
class MatchResult:
    valid: bool
    error_type: str = ""
    errors: list[str] = field(default_factory=list)


_OK = MatchResult(True)


def category_of(record_id: str) -> str:
    """BFCL test category from a record id: ``live_simple_3-2-1`` → ``live_simple``."""
    return re.sub(r"_[0-9][0-9-]*$", "", record_id)


def check_category_supported(category: str) -> None:
    if category.startswith("multi_turn"):
        raise ValueError(
            f"BFCL category '{category}' is multi-turn: the model works through several user turns "
            "against BFCL's simulated APIs, which only BFCL's own harness can run and score, and the "
            f"builtin backend scores single-turn categories ({', '.join(SUPPORTED_PREFIXES)}); set "
            f"eval.backend: bfcl with eval.bfcl.test_category: {category} (vLLM + bfcl-eval, docs/eval.md)"
        )
    if category not in SUPPORTED_PREFIXES:
        raise ValueError(
            f"BFCL category '{category}' is not scored by the builtin matcher (supported: "
            f"{', '.join(SUPPORTED_PREFIXES)}); run it through `backend: bfcl` instead"
        )


def ast_check(functions: list[dict], calls: list[dict], ground_truth: list[dict], category: str) -> MatchResult:
    """Check decoded calls (``[{name: {param: value}}]``) against BFCL's ground truth."""
    if not _is_call_list(calls):
        return MatchResult(False, "ast_decoder:decoder_wrong_output_format",
                           ["calls must be a list of {function_name: {param: value}}"])
    if "parallel" in category:
        return _parallel_no_order(functions, calls, ground_truth)
    if "multiple" in category:
        if len(calls) != len(ground_truth):
            return MatchResult(False, "multiple_function_checker:wrong_count", ["Wrong number of functions."])
        name = next(iter(ground_truth[0]))
        return _simple(_find_description(functions, name), calls[0], ground_truth[0])
    if len(calls) != 1:
        return MatchResult(False, "simple_function_checker:wrong_count", ["Wrong number of functions."])
    return _simple(functions[0], calls[0], ground_truth[0])


def calls_to_bfcl(calls: list[dict]) -> list[dict]:
    """``[{"name": n, "arguments": {...}}]`` (hermes tool calls) → BFCL's ``[{n: {...}}]``."""
    return [{c.get("name"): c.get("arguments") if isinstance(c.get("arguments"), dict) else {}} for c in calls]


# -- helpers (same structure and names as BFCL's ast_checker) -------------------------------------
def _is_call_list(calls: Any) -> bool:
    return isinstance(calls, list) and all(
        isinstance(c, dict) and len(c) == 1 and isinstance(next(iter(c.values())), dict) for c in calls
    )


def _find_description(functions: list[dict], name: str) -> dict | None:
    return next((f for f in functions if f["name"] == name), None)


def _answer_type(allowed: list) -> type | None:
    return next((type(a) for a in allowed if a != ""), None)


def standardize_string(text: str) -> str:
    return re.sub(r"[ \,\.\/\-\_\*\^]", "", text).lower().replace("'", '"')


def _type_check(param: str, value: Any, allowed: list, type_name: str, expected: type,
                nested: type | None) -> tuple[MatchResult, bool]:
    """(result, is_variable) — BFCL's ``type_checker`` for Python."""
    answer_type = _answer_type(allowed)
    is_variable = answer_type is not None and answer_type != expected
    if type(value) is expected:
        if nested is None:
            return _OK, is_variable
        for option in allowed:
            if type(option) is list and all(
                _type_check(param, item, option, str(nested), nested, None)[0].valid for item in value
            ):
                return _OK, is_variable
            if type(option) is not list:  # BFCL: a non-list option passes the nested check
                return _OK, is_variable
        return MatchResult(False, "type_error:nested", [
            f"Nested type checking failed for parameter {param!r}: expected {type_name} of {nested.__name__}, got {value!r}."
        ]), is_variable
    if answer_type is not None and type(value) is answer_type:
        return _OK, True
    return MatchResult(False, "type_error:simple", [
        f"Incorrect type for parameter {param!r}. Expected type {type_name}, got {type(value).__name__}. Parameter value: {value!r}."
    ]), False


def _string_check(param: str, value: str, allowed: list) -> MatchResult:
    if standardize_string(value) in [standardize_string(a) for a in allowed if type(a) is str]:
        return _OK
    return MatchResult(False, "value_error:string", [
        f"Invalid value for parameter {param!r}: {value!r}. Expected one of {allowed}. Case insensitive."
    ])


def _std(v: Any) -> Any:
    return standardize_string(v) if type(v) is str else v


def _list_check(param: str, value: list, allowed: list) -> MatchResult:
    # BFCL iterates every allowed option, so an optional "" becomes [] and accepts an empty list
    options = [[_std(a) for a in option] for option in allowed if isinstance(option, (list, str))]
    if [_std(v) for v in value] in options:
        return _OK
    return MatchResult(False, "value_error:list/tuple",
                       [f"Invalid value for parameter {param!r}: {value!r}. Expected one of {allowed}."])


def _dict_check(param: str, value: dict, allowed: list) -> MatchResult:
    result = MatchResult(False, "dict_checker:unclear")
    for option in allowed:
        if option == "":
            continue
        result = MatchResult(False, "dict_checker:unclear")
        ok = True
        for key, v in value.items():
            if key not in option:
                result = MatchResult(False, "value_error:dict_key", [f"Unexpected dict key parameter: '{key}'."])
                ok = False
                break
            if _std(v) not in [_std(a) for a in option[key]]:
                result = MatchResult(False, "value_error:dict_value",
                                     [f"Invalid value for parameter {key!r}: {v!r}. Expected one of {option[key]}."])
                ok = False
                break
        for key, options in option.items():
            if key not in value and "" not in options:
                result = MatchResult(False, "value_error:dict_key", [f"Missing dict key parameter: '{key}'."])
                ok = False
                break
        if ok:
            return _OK
    return result


def _list_dict_check(param: str, value: list, allowed: list) -> MatchResult:
    result = MatchResult(False, "list_dict_checker:unclear")
    for option in allowed:
        if len(value) != len(option):
            result = MatchResult(False, "value_error:list_dict_count", ["Wrong number of dictionaries in the list."])
            continue
        ok = True
        for item, expected in zip(value, option):
            result = _dict_check(param, item, [expected])
            if not result.valid:
                ok = False
                break
        if ok:
            return _OK
    return result


def _simple(description: dict | None, call: dict, answer: dict) -> MatchResult:
    expected_name, allowed_by_param = next(iter(answer.items()))
    if description is None:
        return MatchResult(False, "simple_function_checker:wrong_func_name",
                           [f"Function {expected_name!r} is not among the offered functions."])
    name = description["name"]
    if name not in call:
        return MatchResult(False, "simple_function_checker:wrong_func_name",
                           [f"Function name {name!r} not found in model output."])
    params = call[name]
    details = description["parameters"]["properties"]
    for required in description["parameters"].get("required", []):
        if required not in params:
            return MatchResult(False, "simple_function_checker:missing_required",
                               [f"Missing required parameter: {required!r}."])
    for param, value in params.items():
        if param not in details or param not in allowed_by_param:
            return MatchResult(False, "simple_function_checker:unexpected_param", [f"Unexpected parameter: {param!r}."])
        type_name = details[param]["type"]
        expected = PYTHON_TYPE_MAPPING[type_name]
        nested = PYTHON_TYPE_MAPPING[details[param]["items"]["type"]] if type_name in NESTED_TYPES else None
        if type_name == "tuple" and type(value) is tuple:
            value = list(value)
        if type_name == "float" and type(value) is int:  # BFCL allows Python's int -> float
            value = float(value)
        allowed = allowed_by_param[param]
        type_result, is_variable = _type_check(param, value, allowed, type_name, expected, nested)
        if not type_result.valid:
            return type_result
        if not is_variable:
            if expected is dict:
                check = _dict_check(param, value, allowed)
            elif expected is list and nested is dict:
                check = _list_dict_check(param, value, allowed)
            elif expected is str:
                check = _string_check(param, value, allowed)
            elif expected is list:
                check = _list_check(param, value, allowed)
            else:
                check = None
            if check is not None:
                if not check.valid:
                    return check
                continue
        if value not in allowed:
            return MatchResult(False, "value_error:others",
                               [f"Invalid value for parameter {param!r}: {value!r}. Expected one of {allowed}."])
    for param, allowed in allowed_by_param.items():
        if param not in params and "" not in allowed:
            return MatchResult(False, "simple_function_checker:missing_optional",
                               [f"Optional parameter {param!r} not provided and not marked as optional."])
    return _OK


def _parallel_no_order(functions: list[dict], calls: list[dict], ground_truth: list[dict]) -> MatchResult:
    if len(calls) != len(ground_truth):
        return MatchResult(False, "parallel_function_checker_no_order:wrong_count", ["Wrong number of functions."])
    matched: set[int] = set()
    for i, answer in enumerate(ground_truth):
        description = _find_description(functions, next(iter(answer)))
        errors: list[str] = []
        found = False
        for index, call in enumerate(calls):
            if index in matched:
                continue
            result = _simple(description, call, answer)
            if result.valid:
                matched.add(index)
                found = True
                break
            errors.append(f"model call {index}: {'; '.join(result.errors)}")
        if not found:
            return MatchResult(False, "parallel_function_checker_no_order:cannot_find_match",
                               [f"No model call matches expected call {i}."] + errors)
    return _OK
