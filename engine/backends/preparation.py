"""Progress of a model's preparation on first use: each step, what it does and an ETA.

Exporting a name or checkpoint into the cache (`models.resolve_model`) takes a few seconds
to minutes: weights, the ONNX export, the check against PyTorch, saving. `Preparation`
reports each step to a callback as a `ModelProgress`; the ETA comes from a plan of expected
seconds per step (measured on a reference machine), rescaled by how long the finished steps
really took here. The library reports; the CLI decides whether and how to show it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelProgress:
    """One step of preparing a model: reported when it begins, and once more when all are done.

    `stage` is "model", as in a render's `Progress`, so one callback can take both.
    """

    step: str  # "weights", "export", "parity" or "save"
    detail: str  # what the step is doing, in words
    index: int  # 1-based position of the step in the plan
    count: int  # steps in the plan
    elapsed_s: float  # since the preparation began
    eta_s: float | None  # estimated seconds until the model is ready; None when unknown
    done: bool = False  # True on the last report: every step finished
    times: tuple[tuple[str, float], ...] = ()  # seconds each finished step took, in order
    stage: str = "model"

    def line(self) -> str:
        """The report in one line of text: the step and its ETA, or the finished steps' times."""
        if self.done:
            steps = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in self.times)
            return f"model ready in {self.elapsed_s:.1f} s ({steps})"
        eta = f", about {self.eta_s:.0f} s left" if self.eta_s is not None else ""
        return f"model [{self.index}/{self.count}] {self.step}: {self.detail} ({self.elapsed_s:.1f} s{eta})"


class Preparation:
    """Times the steps of a preparation and reports each to `callback` with an ETA.

    `plan` lists the steps in order with their expected seconds on the reference machine (it
    may be set after construction, before the first step). The ETA is the plan of the steps
    still to run, scaled by how much slower or faster the finished ones ran here than planned.
    """

    def __init__(
        self,
        callback: Callable[[ModelProgress], None] | None,
        plan: Sequence[tuple[str, float]] = (),
        *,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.callback = callback
        self.plan = list(plan)
        self.clock = clock
        self.started = clock()
        self.times: list[tuple[str, float]] = []
        self._current: tuple[str, float] | None = None

    def begin(self, step: str, detail: str) -> None:
        """Finish the running step (if any) and report `step` as begun."""
        self._close()
        now = self.clock()
        self._current = (step, now)
        log.info("model preparation: %s: %s", step, detail)
        names = [name for name, _ in self.plan]
        index = names.index(step) + 1 if step in names else len(self.times) + 1
        self._report(step, detail, index, now)

    def finish(self) -> None:
        """Finish the running step and report the whole preparation as done."""
        self._close()
        now = self.clock()
        log.info("model preparation done in %.1f s: %s", now - self.started, self.times)
        self._report("done", "ready", len(self.plan), now, done=True)

    def eta(self) -> float | None:
        """Seconds left by the plan of the steps not finished, at this machine's measured pace."""
        finished = {name for name, _ in self.times}
        planned_done = sum(seconds for name, seconds in self.plan if name in finished)
        spent = sum(seconds for _, seconds in self.times)
        pace = spent / planned_done if planned_done > 0 and spent > 0 else 1.0
        left = sum(seconds for name, seconds in self.plan if name not in finished) * pace
        if self._current is not None:  # the running step has been going a while
            left = max(left - (self.clock() - self._current[1]), 0.0)
        return left if self.plan else None

    def _close(self) -> None:
        if self._current is not None:
            name, began = self._current
            self.times.append((name, self.clock() - began))
            self._current = None

    def _report(self, step: str, detail: str, index: int, now: float, *, done: bool = False) -> None:
        if self.callback is None:
            return
        self.callback(
            ModelProgress(
                step=step,
                detail=detail,
                index=index,
                count=max(len(self.plan), index),
                elapsed_s=now - self.started,
                eta_s=0.0 if done else self.eta(),
                done=done,
                times=tuple(self.times),
            )
        )
