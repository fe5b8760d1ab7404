"""OKX's rate limits: each endpoint its own budget per key (20 requests per 2 s), apart from the others."""

from __future__ import annotations

import collections


class RateLimits:
    """The arrivals each path counted against its own limit, and how many it refused (50011).
    Not thread-safe: the stand-in calls it under its lock."""

    def __init__(self):
        self.refused: collections.Counter = collections.Counter()
        self._counted: dict[str, list[float]] = collections.defaultdict(list)
        self._recent: dict[str, collections.deque] = collections.defaultdict(collections.deque)

    def over(self, path: str, now: float, limit: int, window: float) -> bool:
        """True (and counted as refused) when ``path`` already took ``limit`` requests within the
        last ``window`` seconds before ``now`` (time.monotonic()); else the arrival uses a slot."""
        recent = self._recent[path]
        while recent and now - recent[0] >= window:
            recent.popleft()
        if len(recent) >= limit:
            self.refused[path] += 1
            return True
        recent.append(now)
        self._counted[path].append(now)
        return False

    def counted(self, path: str) -> list[float]:
        """The arrivals at ``path`` that used up a slot of its limit (time.monotonic())."""
        return self._counted[path]

    def max_in_any_window(self, path: str, window: float) -> int:
        """The most requests to ``path`` counted within any ``window`` seconds."""
        times = sorted(self._counted[path])
        most, start = 0, 0
        for end, t in enumerate(times):
            while t - times[start] >= window:
                start += 1
            most = max(most, end - start + 1)
        return most
