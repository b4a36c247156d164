"""What one run may spend: upstream requests, tokens and time, shared by all its participants.

Every cap is checked before a call starts, so a run never begins work it may not do. A call counts as 1 + its
`num_retries` requests, the most LiteLLM may send for it; the presentation's requests are held back from the start,
so the agents cannot spend them.
"""

from __future__ import annotations

import time

from .coordination import OutOfBudget


class Budget:
    def __init__(self, max_calls: int, max_tokens: int, run_timeout: float, held_back: int = 0) -> None:
        self.max_calls = max_calls
        self.max_tokens = max_tokens
        self.deadline = time.monotonic() + run_timeout
        self.calls = 0  # requests reserved so far, at most max_calls
        self.tokens = 0  # reported by finished calls
        self._held_back = min(held_back, max_calls - 1)

    def take(self, requests: int, *, presentation: bool = False) -> float:
        """Reserve `requests` upstream requests for one call, or raise OutOfBudget saying which cap is spent; the
        seconds left of the run, as `seconds_left()` (read once: the call needs it next)."""
        available = self.max_calls - (0 if presentation else self._held_back)
        if self.calls + requests > available:
            raise OutOfBudget(f"the run has used its max_calls={self.max_calls} upstream requests")
        if self.tokens >= self.max_tokens:
            raise OutOfBudget(f"the run has used its max_run_tokens={self.max_tokens} tokens")
        left = self.seconds_left()
        if left <= 0:
            raise OutOfBudget("the run has reached its run_timeout")
        self.calls += requests
        return left

    def spend(self, tokens: int) -> None:
        self.tokens += tokens

    def seconds_left(self) -> float:
        return self.deadline - time.monotonic()
