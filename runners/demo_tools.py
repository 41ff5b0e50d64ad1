"""In-process implementations of the synthetic dataset's tools (``runners/synth_data.py``), for
the entropy stage's ``tools_config`` (``specs/tools/demo_tools.yaml``).

Deterministic and offline: results are derived from the arguments (a hash where the real world
would answer), so a rollout that calls them is reproducible. Invalid arguments raise
``ValueError``; the entropy stage turns that into an error message the model reads as the tool
turn, as a real tool server would.
"""

from __future__ import annotations

import hashlib
from typing import Any

from runners.synth_data import ACCOUNT_WORDS, CABINS, CURRENCIES, LANDMARKS, LANGUAGES, ORDER_STATUS

# Fixed demo rates (units of USD per unit of currency); not market data.
USD_PER_UNIT = {"USD": 1.0, "EUR": 1.08, "GBP": 1.27, "JPY": 0.0067, "CNY": 0.14}


def _stable_int(*parts: Any, low: int = 0, high: int = 100) -> int:
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return low + int.from_bytes(digest[:8], "big") % (high - low + 1)


def _one_of(name: str, value: Any, allowed: list[str]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


def get_weather(city: str, unit: str, days: int | None = None) -> dict:
    _one_of("unit", unit, ["celsius", "fahrenheit"])
    def temp(day: int) -> int:
        c = _stable_int(city, day, low=-5, high=35)
        return c if unit == "celsius" else round(c * 9 / 5 + 32)
    if days is None:
        return {"city": city, "unit": unit, "temperature": temp(0)}
    if not isinstance(days, int) or not 1 <= days <= 14:
        raise ValueError(f"days must be an integer from 1 to 14, got {days!r}")
    return {"city": city, "unit": unit, "forecast": [temp(d) for d in range(days)]}


def convert_currency(amount: float, from_currency: str, to_currency: str) -> dict:
    _one_of("from_currency", from_currency, CURRENCIES)
    _one_of("to_currency", to_currency, CURRENCIES)
    converted = float(amount) * USD_PER_UNIT[from_currency] / USD_PER_UNIT[to_currency]
    return {"amount": amount, "from_currency": from_currency, "to_currency": to_currency,
            "converted": round(converted, 2)}


def set_alarm(hour: int, minute: int, repeat_daily: bool, label: str | None = None) -> dict:
    if not (isinstance(hour, int) and 0 <= hour <= 23 and isinstance(minute, int) and 0 <= minute <= 59):
        raise ValueError(f"hour must be 0-23 and minute 0-59, got {hour!r}:{minute!r}")
    return {"status": "set", "time": f"{hour:02d}:{minute:02d}", "repeat_daily": bool(repeat_daily),
            "label": label}


def search_flights(origin: str, destination: str, date: str, nonstop: bool, cabin: str | None = None) -> dict:
    if cabin is not None:
        _one_of("cabin", cabin, CABINS)
    n = _stable_int(origin, destination, date, low=0, high=3)
    flights = [{"flight": f"RL{_stable_int(origin, destination, date, i, low=100, high=999)}",
                "stops": 0 if nonstop else _stable_int(date, i, low=0, high=1),
                "price": _stable_int(origin, destination, i, low=80, high=900)} for i in range(n)]
    return {"origin": origin, "destination": destination, "date": date, "cabin": cabin or "economy",
            "flights": flights}


def send_email(to: str, subject: str, urgent: bool) -> dict:
    return {"status": "sent", "to": to, "subject": subject, "urgent": bool(urgent),
            "message_id": _stable_int(to, subject, low=10000, high=99999)}


def translate_text(text: str, target_language: str) -> dict:
    _one_of("target_language", target_language, LANGUAGES)
    return {"text": text, "target_language": target_language, "translation": f"[{target_language}] {text}"}


def lookup_user(name: str) -> dict:
    return {"name": name, "user_id": _stable_int(name, low=100, high=9999)}


def get_orders(user_id: int, status: str) -> dict:
    _one_of("status", status, ORDER_STATUS)
    n = _stable_int(user_id, status, low=0, high=3)
    return {"user_id": user_id, "status": status,
            "orders": [{"order_id": _stable_int(user_id, status, i, low=1000, high=9999)} for i in range(n)]}


def find_landmark(name: str) -> dict:
    if name not in LANDMARKS:
        raise ValueError(f"unknown landmark {name!r} (known: {', '.join(sorted(LANDMARKS))})")
    return {"landmark": name, "city": LANDMARKS[name]}


def find_account(handle: str) -> dict:
    """The multi-turn task's lookup: a handle's account code (a hash; nothing else knows it)."""
    if not isinstance(handle, str) or not handle:
        raise ValueError(f"handle must be a non-empty string, got {handle!r}")
    return {"handle": handle, "account": ACCOUNT_WORDS[_stable_int("account", handle, low=0, high=len(ACCOUNT_WORDS) - 1)]}


def list_orders(account: str, status: str) -> dict:
    _one_of("account", account, ACCOUNT_WORDS)
    _one_of("status", status, ORDER_STATUS)
    n = _stable_int(account, status, low=0, high=3)
    return {"account": account, "status": status,
            "orders": [{"order_id": _stable_int(account, status, i, low=1000, high=9999)} for i in range(n)]}
