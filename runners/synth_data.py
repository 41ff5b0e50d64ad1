"""A deterministic synthetic tool-calling dataset in the shape of the user's
``hardgen_openai_messages_fc.json``: a JSON list of ``{"messages": [...], "tools": [...]}``.

Everything here is generated from templates (no real user data). The right call follows from the
user turn by simple rules a ~400k-parameter model can learn: "What's the weather in Paris in
celsius?" → ``get_weather(city="Paris", unit="celsius")``. Optional arguments appear in the call
only when the user mentions them. Some records ask for two things (two calls in one answer); some
carry an earlier assistant tool call and a ``tool`` response whose value the final call must copy
(e.g. a user id looked up first). With ``multi_turn_fraction`` some records are multi-turn tasks
(:func:`_multi_turn_task`): the user names a handle the model has never seen, the model must call
``find_account``, read the account code in the tool's answer, then call ``list_orders`` with it; the
recorded tool answer is what ``runners.demo_tools.find_account`` returns, so executing the tool and
replaying the record agree. The final assistant turn is always
``<think>SHORT REASONING</think>\\n\\n<tool_call>\\n{"name": …, "arguments": {…}}\\n</tool_call>``.

Record ``i`` of seed ``s`` depends only on ``(s, i)``, so a larger dataset starts with the smaller
one. CLI: ``python -m runners.synth_data --num-records N --seed S -o file.json``.
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Callable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

SYSTEM_PROMPT = "You are a helpful assistant. Answer by calling the right tool."

CITIES = ["Paris", "Tokyo", "Berlin", "Rome", "Madrid", "Cairo", "Lima", "Oslo", "Seoul", "Sydney", "Toronto", "Dublin"]
NAMES = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory", "oscar"]
CURRENCIES = ["USD", "EUR", "GBP", "JPY", "CNY"]
LANGUAGES = ["french", "german", "spanish", "japanese", "chinese"]
PHRASES = ["good morning", "thank you", "where is the station", "see you tomorrow", "how much is this"]
ORDER_STATUS = ["open", "shipped", "delivered"]
CABINS = ["economy", "business", "first"]
SUBJECTS = ["meeting", "invoice", "holiday", "report", "lunch"]
LANDMARKS = {"Eiffel Tower": "Paris", "Colosseum": "Rome", "Brandenburg Gate": "Berlin", "Opera House": "Sydney",
             "Pyramids": "Cairo", "CN Tower": "Toronto", "Tokyo Tower": "Tokyo", "Prado": "Madrid"}


def _fn(name: str, description: str, properties: dict[str, dict], required: list[str]) -> dict:
    return {"type": "function", "function": {"name": name, "description": description, "parameters": {
        "type": "object", "properties": properties, "required": required}}}


TOOLS: dict[str, dict] = {t["function"]["name"]: t for t in [
    _fn("get_weather", "Current weather or a forecast for a city.", {
        "city": {"type": "string", "description": "City name."},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "description": "Temperature unit."},
        "days": {"type": "integer", "description": "Forecast length in days (optional)."},
    }, ["city", "unit"]),
    _fn("convert_currency", "Convert an amount between currencies.", {
        "amount": {"type": "number", "description": "Amount to convert."},
        "from_currency": {"type": "string", "enum": CURRENCIES},
        "to_currency": {"type": "string", "enum": CURRENCIES},
    }, ["amount", "from_currency", "to_currency"]),
    _fn("set_alarm", "Set an alarm.", {
        "hour": {"type": "integer", "description": "Hour, 0-23."},
        "minute": {"type": "integer", "description": "Minute, 0-59."},
        "repeat_daily": {"type": "boolean", "description": "Repeat every day."},
        "label": {"type": "string", "description": "Optional label."},
    }, ["hour", "minute", "repeat_daily"]),
    _fn("search_flights", "Search flights between two cities on a date.", {
        "origin": {"type": "string"}, "destination": {"type": "string"},
        "date": {"type": "string", "description": "YYYY-MM-DD."},
        "nonstop": {"type": "boolean"},
        "cabin": {"type": "string", "enum": CABINS, "description": "Optional cabin class."},
    }, ["origin", "destination", "date", "nonstop"]),
    _fn("send_email", "Send an email to a user.", {
        "to": {"type": "string"}, "subject": {"type": "string"}, "urgent": {"type": "boolean"},
    }, ["to", "subject", "urgent"]),
    _fn("translate_text", "Translate a short text.", {
        "text": {"type": "string"}, "target_language": {"type": "string", "enum": LANGUAGES},
    }, ["text", "target_language"]),
    _fn("lookup_user", "Find a user's id by name.", {"name": {"type": "string"}}, ["name"]),
    _fn("get_orders", "List a user's orders.", {
        "user_id": {"type": "integer"}, "status": {"type": "string", "enum": ORDER_STATUS},
    }, ["user_id", "status"]),
    _fn("find_landmark", "Find the city a landmark is in.", {"name": {"type": "string"}}, ["name"]),
]}

# The multi-turn kind's own tools. Kept out of TOOLS: the other kinds draw distractors from TOOLS,
# and a longer list would change every default record.
ACCOUNT_WORDS = ["amber", "birch", "cedar", "delta", "ember", "fjord", "garnet", "harbor", "indigo", "jasper",
                 "kelp", "lotus", "maple", "nectar", "onyx", "pebble", "quartz", "raven", "sable", "tulip",
                 "umber", "velvet", "willow", "yarrow", "zephyr", "acorn", "basalt", "cobalt", "dune", "flint"]
MULTI_TURN_TOOLS: dict[str, dict] = {t["function"]["name"]: t for t in [
    _fn("find_account", "Find the account code of a user handle.",
        {"handle": {"type": "string", "description": "User handle."}}, ["handle"]),
    _fn("list_orders", "List the orders of an account.", {
        "account": {"type": "string", "description": "Account code from find_account."},
        "status": {"type": "string", "enum": ORDER_STATUS},
    }, ["account", "status"]),
]}

Call = dict[str, Any]
Task = tuple[str, str, list[Call]]  # (user text, reasoning, calls)

WORDINGS = ("prose", "quoted", "keyed")


class Wording:
    """How a template writes a value the call must copy (``data.synthetic.wording``).

    ``prose`` (the default, every record as it always was): ``in Paris``. The byte-level BPE
    splits ``' Paris'`` in prose and ``'Paris'`` after the call's ``"`` into different tokens, so a
    tiny model has to learn a token-to-token map per value (docs/training.md: copying is what it
    learns last). ``quoted``: ``in "Paris"`` -- the value's tokens are the call's, preceded by the
    same `` "``; the model still has to pick which quoted value fills which argument. ``keyed``:
    ``in "city": "Paris"`` -- the value follows the call's own ``"city": "`` tokens (the
    multi-turn task's wording), so copying is a match on the key. Numbers are bare in every
    wording, as in the call's JSON."""

    def __init__(self, kind: str = "prose"):
        if kind not in WORDINGS:
            raise ValueError(f"wording must be one of {', '.join(WORDINGS)}, got {kind!r}")
        self.kind = kind

    def __call__(self, key: str, value: Any) -> str:
        text = f"{value:g}" if isinstance(value, float) else str(value)
        if self.kind == "prose":
            return text
        shown = text if isinstance(value, (int, float)) else f'"{text}"'
        return shown if self.kind == "quoted" else f'"{key}": {shown}'

    @property
    def prose(self) -> bool:
        return self.kind == "prose"


def _call(function: str, **arguments: Any) -> Call:
    return {"name": function, "arguments": arguments}


# -- single-call templates: each returns (user text, reasoning, [call]) ---------------------------
def _weather(r: random.Random, w: Wording) -> Task:
    city, unit = r.choice(CITIES), r.choice(["celsius", "fahrenheit"])
    c, u = w("city", city), w("unit", unit)
    if r.random() < 0.4:
        days = r.randint(2, 7)
        d = w("days", days)
        return (f"Give me the {d}-day forecast for {c} in {u}." if w.prose
                else f"Give me the forecast for {c} in {u} for {d} days.",
                f"A {d}-day forecast for {c} in {u}: get_weather with days." if w.prose
                else f"A forecast for {c} in {u} for {d} days: get_weather with days.",
                [_call("get_weather", city=city, unit=unit, days=days)])
    return (r.choice([f"What's the weather in {c} in {u}?", f"How warm is it in {c}? Use {u}."]),
            f"The user wants the weather in {c} in {u}.",
            [_call("get_weather", city=city, unit=unit)])


def _currency(r: random.Random, w: Wording) -> Task:
    src, dst = r.sample(CURRENCIES, 2)
    amount = r.choice([float(r.randint(1, 500)), r.randint(1, 999) + 0.5])
    a, s, d = w("amount", amount), w("from_currency", src), w("to_currency", dst)
    return (f"Convert {a} {s} to {d}.", f"Convert {a} from {s} to {d}.",
            [_call("convert_currency", amount=amount, from_currency=src, to_currency=dst)])


def _alarm(r: random.Random, w: Wording) -> Task:
    hour, minute, daily = r.randint(0, 23), r.choice([0, 5, 15, 30, 45]), r.random() < 0.5
    when = "repeating daily" if daily else "just once"
    args: dict[str, Any] = {"hour": hour, "minute": minute, "repeat_daily": daily}
    # prose writes 7:05 (the call needs minute=5); the other wordings give hour and minute apart
    at = (f"{hour}:{minute:02d}" if w.prose else f"hour {hour} and minute {minute}" if w.kind == "quoted"
          else f"{w('hour', hour)} and {w('minute', minute)}")
    text = f"Set an alarm for {at}, {when}."
    if r.random() < 0.4:
        args["label"] = r.choice(["gym", "meds", "call mom", "standup"])
        text = f"Set an alarm for {at} called {w('label', args['label'])}, {when}."
    return text, f"An alarm at {at}, repeat_daily={str(daily).lower()}.", [_call("set_alarm", **args)]


def _flights(r: random.Random, w: Wording) -> Task:
    origin, dest = r.sample(CITIES, 2)
    date = f"2025-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}"
    nonstop = r.random() < 0.5
    args: dict[str, Any] = {"origin": origin, "destination": dest, "date": date, "nonstop": nonstop}
    kind = "nonstop flights" if nonstop else "flights"
    o, d, t = w("origin", origin), w("destination", dest), w("date", date)
    cabin = ""
    if r.random() < 0.4:
        args["cabin"] = r.choice(CABINS)
        cabin = f" in {w('cabin', args['cabin'])}"
    return (f"Find {kind} from {o} to {d} on {t}{cabin}.",
            f"Search flights {o} to {d} on {t}, nonstop={str(nonstop).lower()}.",
            [_call("search_flights", **args)])


def _email(r: random.Random, w: Wording) -> Task:
    to, subject, urgent = r.choice(NAMES), r.choice(SUBJECTS), r.random() < 0.3
    t, s = w("to", to), w("subject", subject)
    text = f"Email {t} about the {s}" + (", it's urgent." if urgent else ".")
    return text, f"Send {t} an email about {s}.", [_call("send_email", to=to, subject=subject, urgent=urgent)]


def _translate(r: random.Random, w: Wording) -> Task:
    phrase, lang = r.choice(PHRASES), r.choice(LANGUAGES)
    p = f"'{phrase}'" if w.prose else w("text", phrase)
    return (f"Translate {p} into {w('target_language', lang)}.",
            f"Translate the phrase into {w('target_language', lang)}.",
            [_call("translate_text", text=phrase, target_language=lang)])


SINGLE_TASKS: list[Callable[[random.Random, Wording], Task]] = [_weather, _currency, _alarm, _flights, _email,
                                                                _translate]


# -- chained tasks: a first call, its tool response, then the final call that uses it ------------
def _orders_chain(r: random.Random, w: Wording) -> tuple[str, Task, dict, Task]:
    name, status, user_id = r.choice(NAMES), r.choice(ORDER_STATUS), r.randint(100, 9999)
    n, s = w("name", name), w("status", status)
    user = f"Look up {n}'s account and list the {s} orders." if w.prose else \
        f"Look up the account of {n} and list the {s} orders."
    first = (user, f"I need {n}'s user id first." if w.prose else f"I need the user id of {n} first.",
             [_call("lookup_user", name=name)])
    response = {"name": name, "user_id": user_id}
    final = (user, f"The user id is {w('user_id', user_id)}; now list {s} orders.",
             [_call("get_orders", user_id=user_id, status=status)])
    return user, first, response, final


def _landmark_chain(r: random.Random, w: Wording) -> tuple[str, Task, dict, Task]:
    landmark = r.choice(sorted(LANDMARKS))
    city, unit = LANDMARKS[landmark], r.choice(["celsius", "fahrenheit"])
    lm, u = w("name", landmark), w("unit", unit)
    user = f"What's the weather at the {lm} in {u}?"
    first = (user, f"I need the city of the {lm} first.", [_call("find_landmark", name=landmark)])
    response = {"landmark": landmark, "city": city}
    final = (user, f"The {lm} is in {w('city', city)}; get its weather in {u}.",
             [_call("get_weather", city=city, unit=unit)])
    return user, first, response, final


CHAIN_TASKS = [_orders_chain, _landmark_chain]

# Names for ``data.synthetic.tasks``: which templates a dataset draws from.
TASK_NAMES = {"weather": _weather, "currency": _currency, "alarm": _alarm, "flights": _flights, "email": _email,
              "translate": _translate, "orders_chain": _orders_chain, "landmark_chain": _landmark_chain}


@lru_cache(maxsize=32)
def _task_lists(tasks: tuple[str, ...] | None, tool_response_fraction: float, two_call_fraction: float,
                multi_turn_fraction: float) -> tuple[list, list]:
    """(single-call templates, chained templates) to draw from, checked against the fractions once
    per configuration (not per record); ``None`` = all of them, in their fixed order (so the default
    keeps every record as it was)."""
    if tasks is None:
        single, chain = SINGLE_TASKS, CHAIN_TASKS
    else:
        unknown = sorted(set(tasks) - set(TASK_NAMES))
        if unknown:
            raise ValueError(f"unknown task(s) {', '.join(unknown)}; choose from {', '.join(TASK_NAMES)}")
        chosen = [TASK_NAMES[t] for t in TASK_NAMES if t in tasks]
        single, chain = [t for t in chosen if t in SINGLE_TASKS], [t for t in chosen if t in CHAIN_TASKS]
    if tool_response_fraction > 0 and not chain:
        raise ValueError("tool_response_fraction > 0 needs a chained task (orders_chain or landmark_chain) in tasks")
    if two_call_fraction > 0 and len(single) < 2:
        raise ValueError("two_call_fraction > 0 needs at least two single-call tasks in tasks")
    if not single and tool_response_fraction + two_call_fraction + multi_turn_fraction < 1:
        raise ValueError("tasks has no single-call task, but some records would be single-call ones")
    return single, chain


# -- multi-turn tasks: the final call needs a value only the executed tool knows -------------------
def _multi_turn_task(r: random.Random) -> tuple[str, Task, str, Task]:
    """``(user, lookup call, tool answer, final call)``: ``find_account(handle)``, then
    ``list_orders(account, status)`` with the code from its answer. The handle is drawn from
    12 x 90 values and its code is a hash (``runners.demo_tools.find_account``): a model cannot
    memorise or compute it, it has to call the tool and copy the code from the answer. The recorded
    answer equals the executed tool's (unlike ``_orders_chain``, a random id in a recorded turn).

    Shaped so a ~400k-parameter model learns the copies (docs/data.md, measured): the user turn
    writes each value after the same ``"key": "`` tokens as the call's JSON (a 2-layer model copies
    by matching the tokens before a value; ``' grace'`` in prose and ``'grace'`` after a quote are
    different tokens), the code is one word, and the reasoning repeats no value."""
    from runners.demo_tools import find_account  # demo_tools imports this module's constants

    handle, status = f"{r.choice(NAMES)}{r.randint(10, 99)}", r.choice(ORDER_STATUS)
    user = r.choice([f'Orders for "handle": "{handle}" with "status": "{status}".',
                     f'List the orders where "handle": "{handle}" and "status": "{status}".',
                     f'Show the orders: "handle": "{handle}", "status": "{status}".'])
    answer = find_account(handle)
    first = (user, "I need the account code first.", [_call("find_account", handle=handle)])
    final = (user, "I have the account code; now I list the orders.",
             [_call("list_orders", account=answer["account"], status=status)])
    return user, first, json.dumps(answer, ensure_ascii=False), final


def render_answer(reasoning: str, calls: list[Call]) -> str:
    """The assistant content: think block, blank line, one ``<tool_call>`` block per call."""
    blocks = "\n".join(f"<tool_call>\n{json.dumps(c, ensure_ascii=False)}\n</tool_call>" for c in calls)
    return f"<think>{reasoning}</think>\n\n{blocks}"


def _tools_for(r: random.Random, used: list[str], distractors: int = 2) -> list[dict]:
    # The needed tools plus a few others, in a seeded order: the model must pick by name.
    others = [n for n in sorted(TOOLS) if n not in used]
    names = sorted(set(used) | set(r.sample(others, min(distractors, len(others)))))
    r.shuffle(names)
    return [TOOLS[n] if n in TOOLS else MULTI_TURN_TOOLS[n] for n in names]


def make_record(seed: int, index: int, tool_response_fraction: float = 0.25, two_call_fraction: float = 0.2,
                distractor_tools: int = 2, multi_turn_fraction: float = 0.0, wording: str = "prose",
                tasks: list[str] | None = None) -> dict:
    """Record ``index`` of the dataset for ``seed`` (independent of the other records); the tools
    offered are the needed ones plus ``distractor_tools`` others. ``multi_turn_fraction`` takes its
    share after the other two kinds, so at 0 (the default) every record is what it always was."""
    r = random.Random(f"rlreg-synth:{seed}:{index}")
    w = Wording(wording)
    single_tasks, chain_tasks = _task_lists(tuple(tasks) if tasks is not None else None, tool_response_fraction,
                                            two_call_fraction, multi_turn_fraction)
    messages: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM_PROMPT}]
    roll = r.random()
    if roll < tool_response_fraction:
        user, first, response, final = r.choice(chain_tasks)(r, w)
        messages += [
            {"role": "user", "content": user},
            {"role": "assistant", "content": render_answer(first[1], first[2])},
            {"role": "tool", "content": json.dumps(response, ensure_ascii=False)},
        ]
        calls, reasoning = final[2], final[1]
        used = [first[2][0]["name"], calls[0]["name"]]
    elif roll < tool_response_fraction + two_call_fraction:
        (text_a, why_a, calls_a), (text_b, why_b, calls_b) = (t(r, w) for t in r.sample(single_tasks, 2))
        messages.append({"role": "user", "content": f"{text_a} Also: {text_b[0].lower()}{text_b[1:]}"})
        calls, reasoning = calls_a + calls_b, f"Two requests. {why_a} {why_b}"
        used = [c["name"] for c in calls]
    elif roll < tool_response_fraction + two_call_fraction + multi_turn_fraction:
        user, first, answer, final = _multi_turn_task(r)
        messages += [
            {"role": "user", "content": user},
            {"role": "assistant", "content": render_answer(first[1], first[2])},
            {"role": "tool", "content": answer},
        ]
        calls, reasoning = final[2], final[1]
        used = [first[2][0]["name"], calls[0]["name"]]
    else:
        text, reasoning, calls = r.choice(single_tasks)(r, w)
        messages.append({"role": "user", "content": text})
        used = [calls[0]["name"]]
    messages.append({"role": "assistant", "content": render_answer(reasoning, calls)})
    return {"messages": messages, "tools": _tools_for(r, used, distractor_tools)}


def generate_records(num_records: int, seed: int, tool_response_fraction: float = 0.25,
                     two_call_fraction: float = 0.2, distractor_tools: int = 2,
                     multi_turn_fraction: float = 0.0, wording: str = "prose",
                     tasks: list[str] | None = None) -> Iterator[dict]:
    for i in range(num_records):
        yield make_record(seed, i, tool_response_fraction, two_call_fraction, distractor_tools, multi_turn_fraction,
                          wording, tasks)


def write_json(path: str | Path, num_records: int, seed: int, tool_response_fraction: float = 0.25,
               two_call_fraction: float = 0.2, distractor_tools: int = 2, multi_turn_fraction: float = 0.0,
               wording: str = "prose", tasks: list[str] | None = None) -> Path:
    """Write the dataset as one JSON array (one record per line), streaming: memory stays flat."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        f.write("[")
        records = generate_records(num_records, seed, tool_response_fraction, two_call_fraction, distractor_tools,
                                   multi_turn_fraction, wording, tasks)
        for i, rec in enumerate(records):
            f.write(("\n" if i == 0 else ",\n") + json.dumps(rec, ensure_ascii=False))
        f.write("\n]\n")
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m runners.synth_data", description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-records", type=int, default=400, help="number of records")
    parser.add_argument("--seed", type=int, default=0, help="generator seed")
    parser.add_argument("--tool-response-fraction", type=float, default=0.25,
                        help="fraction with an earlier tool call + tool response")
    parser.add_argument("--two-call-fraction", type=float, default=0.2, help="fraction answered with two calls")
    parser.add_argument("--distractor-tools", type=int, default=2, help="tools offered beyond the needed ones")
    parser.add_argument("--multi-turn-fraction", type=float, default=0.0,
                        help="fraction of multi-turn tasks (find_account, then list_orders with its answer)")
    parser.add_argument("--wording", choices=WORDINGS, default="prose",
                        help="how the user turn writes the values the call copies (see Wording)")
    parser.add_argument("-o", "--output", required=True, help="output .json file (a JSON array)")
    args = parser.parse_args(argv)
    fractions = (args.tool_response_fraction, args.two_call_fraction, args.multi_turn_fraction)
    if args.num_records < 1 or args.distractor_tools < 0 or min(fractions) < 0 or sum(fractions) > 1:
        parser.error("--num-records must be >= 1, --distractor-tools >= 0 and the three fractions must sum to at most 1")
    path = write_json(args.output, args.num_records, args.seed, args.tool_response_fraction, args.two_call_fraction,
                      args.distractor_tools, args.multi_turn_fraction, args.wording)
    print(f"wrote {args.num_records} records to {path}")


if __name__ == "__main__":
    main()
