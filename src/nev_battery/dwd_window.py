"""The DWD incremental window in Python, for dbt Python models (which cannot call macros).

Same rules as ``macros/dwd_window.sql``: a batch of days B rebuilds the start days B and B - 1..L
(L = ``dwd_lookback_days``), reads those days and the day after each whole, and the last segment
gap before midnight of the day before each rebuilt day.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def parse_batch_dates(raw: object) -> list[date]:
    """var batch_dates as rendered into a model config: None, '', a list, its repr, or a
    comma-separated string."""
    if raw is None:
        return []
    items = raw if isinstance(raw, (list, tuple)) else _DATE.findall(str(raw))
    return sorted({date.fromisoformat(str(d).strip()) for d in items})


@dataclass(frozen=True)
class DwdWindow:
    rebuild: list[date]  # start days rebuilt (deleted, then re-inserted)
    whole: list[date]  # days read whole
    tail: list[date]  # days of which only the last gap before midnight is read

    @property
    def is_everything(self) -> bool:
        return not self.rebuild


def dwd_window(batch: list[date], lookback_days: int = 1) -> DwdWindow:
    if not batch:
        return DwdWindow([], [], [])
    rebuild = sorted({d - timedelta(days=k) for d in batch for k in range(lookback_days + 1)})
    whole = sorted({d + timedelta(days=k) for d in rebuild for k in (0, 1)})
    tail = sorted({d - timedelta(days=1) for d in rebuild} - set(whole))
    return DwdWindow(rebuild, whole, tail)


def sql_date_list(days: list[date]) -> str:
    return ", ".join(f"cast('{d.isoformat()}' as date)" for d in days)


def read_predicate(w: DwdWindow, gap_s: float, date_col: str = "collect_date",
                   time_col: str = "collect_time") -> str:
    """SQL predicate (DuckDB) selecting the frames a window reads."""
    if w.is_everything:
        return "1 = 1"
    pred = f"{date_col} in ({sql_date_list(w.whole)})"
    if w.tail:
        pred += (f" or ({date_col} in ({sql_date_list(w.tail)}) and {time_col} >= "
                 f"cast({date_col} as timestamp) + interval 1 day - interval {int(gap_s)} second)")
    return f"({pred})"
