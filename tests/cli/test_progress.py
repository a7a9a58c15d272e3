"""The progress display of ``tunebook run`` fed the runner's snapshots directly: counts, best,
ETA, failures (the first with its traceback), --quiet, a terminal's live line, close()."""

from __future__ import annotations

import io
import types
from typing import Any

import pytest

from tunebook.cli import progress
from tunebook.cli.progress import _clock, _ProgressBar
from tunebook.execution.runner import Progress
from tunebook.store.sql import TrialRow

TRACEBACK = """Traceback (most recent call last):
  File "train.py", line 3, in <module>
    step()
  File "train.py", line 2, in step
    raise RuntimeError("CUDA out of memory")
RuntimeError: CUDA out of memory
"""


class Terminal(io.StringIO):
    """An in-memory stream that says it is a terminal (the live-line mode)."""

    def isatty(self) -> bool:
        return True


def trial(index: int, study: str = "main", *, error: str | None = None,
          value: float | None = None) -> TrialRow:
    return TrialRow(id=100 + index, study_id=1, study=study, index=index, params={}, seed=0,
                    status="failed" if error is not None else "completed", attempts=1,
                    error=error, best_value=value)


def snap(total: int = 10, elapsed: float = 0.0, best: TrialRow | None = None,
         failures: tuple[TrialRow, ...] = (), outage: str | None = None,
         **counts: int) -> Progress:
    return Progress(total, counts, best, elapsed, "loss", failures, outage)


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


@pytest.mark.parametrize(("seconds", "shown"), [
    (0, "0:00"), (59.9, "0:59"), (61, "1:01"), (3599, "59:59"), (3600, "1:00:00"),
    (36_000 + 62, "10:01:02"), (100 * 3600, "100:00:00")])
def test_clock(seconds: float, shown: str) -> None:
    assert _clock(seconds) == shown


def test_a_line_shows_the_counts_the_best_trial_and_the_time() -> None:
    out = io.StringIO()
    bar = _ProgressBar(out)
    bar(snap(12, 75.0, trial(3, "arm=a", value=0.012345678), completed=3, running=2,
             infeasible=1, failed=2, pending=4))
    (line,) = lines(out)
    assert line == ("[############------------] 6/12 done | 2 running | 1 infeasible | "
                    "2 failed | best loss 0.01235 (arm=a #3) | 1:15, ETA -")


def test_no_best_yet_and_nothing_to_do() -> None:
    out = io.StringIO()
    _ProgressBar(out)(snap(0, 1.0))
    assert lines(out) == ["[########################] 0/0 done | 0 running | 0 infeasible | "
                          "0 failed | best loss - | 0:01"]


def test_the_eta_comes_from_the_trials_finished_in_this_run() -> None:
    out = io.StringIO()
    bar = _ProgressBar(out)
    # A resumed run: four trials were done before it started; they say nothing of its pace.
    bar(snap(10, 1.0, completed=4, pending=6))
    bar(snap(10, 21.0, completed=6, pending=4))  # 2 in 21 s: 4 left take 42 s
    bar(snap(10, 4000.0, completed=8, pending=2))  # 4 in 4000 s: 2 left take 2000 s
    bar(snap(10, 4100.0, completed=10))
    assert [ln.rsplit(" | ", 1)[1] for ln in lines(out)] == [
        "0:01, ETA -", "0:21, ETA 0:42", "1:06:40, ETA 33:20", "1:08:20"]
    assert lines(out)[-1].startswith("[########################] 10/10 done")


def test_off_a_terminal_a_line_is_written_only_when_something_changed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(progress, "time", types.SimpleNamespace(monotonic=lambda: now[0]))
    out = io.StringIO()
    bar = _ProgressBar(out)
    bar(snap(4, 1.0, running=1, pending=3))
    bar(snap(4, 2.0, running=1, pending=3))  # only the clock moved
    now[0] += 10
    bar(snap(4, 12.0, running=1, pending=3))
    assert len(lines(out)) == 1
    bar(snap(4, 13.0, running=2, pending=2))
    assert len(lines(out)) == 2
    now[0] += 31  # a sign of life at least every half minute
    bar(snap(4, 44.0, running=2, pending=2))
    assert len(lines(out)) == 3
    bar(snap(4, 45.0, running=2, pending=2, outage="connection refused"))
    assert lines(out)[-1].endswith(" | STORE UNREACHABLE: connection refused | 0:45, ETA -")
    bar.close()  # off a terminal every line is complete already
    assert len(lines(out)) == 4 and out.getvalue().endswith("\n")


def test_a_new_failure_is_printed_once_the_first_with_its_traceback() -> None:
    out = io.StringIO()
    bar = _ProgressBar(out)
    bar(snap(4, 1.0, failures=(trial(0, "arm=a", error=TRACEBACK),), failed=1, running=1))
    bar(snap(4, 2.0, failed=1, completed=1))
    bar(snap(4, 3.0, failures=(trial(2, "arm=b", error=TRACEBACK),), failed=2, completed=1))
    text = out.getvalue()
    assert text.count("failed: RuntimeError: CUDA out of memory") == 2
    assert lines(out)[0] == "trial arm=a#0 failed: RuntimeError: CUDA out of memory"
    assert lines(out)[1:7] == ["    " + ln for ln in TRACEBACK.splitlines()]
    assert text.count("Traceback (most recent call last):") == 1  # only the first failure's
    assert "trial arm=b#2 failed: RuntimeError: CUDA out of memory\n[" in text
    assert sum(ln.startswith("[") for ln in lines(out)) == 3


def test_a_long_traceback_is_cut_in_the_middle_and_errors_to_one_line() -> None:
    long = "Traceback (most recent call last):\n" + "".join(
        f"  frame {i}\n" for i in range(20)) + "ValueError: " + "x" * 400 + "\n"
    out = io.StringIO()
    bar = _ProgressBar(out, bar=False)
    bar(snap(failures=(trial(0, error=long), trial(1, error=None), trial(2, error="\n\n"))))
    got = lines(out)
    assert got[0] == "trial main#0 failed: ValueError: " + "x" * 288  # 300 characters at most
    assert got[1:13] == ["    Traceback (most recent call last):",
                         *(f"      frame {i}" for i in range(5)), "      ...",
                         *(f"      frame {i}" for i in range(16, 20)),
                         "    ValueError: " + "x" * 400]
    assert got[13:] == ["trial main#1 failed: (no error recorded)",
                        "trial main#2 failed: (no error recorded)"]


def test_a_failure_without_a_traceback_does_not_use_up_the_traceback() -> None:
    out = io.StringIO()
    bar = _ProgressBar(out, bar=False)
    bar(snap(failures=(trial(0, error="exit status 3"),)))
    bar(snap(failures=(trial(1, error=TRACEBACK),)))
    assert lines(out)[0] == "trial main#0 failed: exit status 3"
    assert lines(out)[1] == "trial main#1 failed: RuntimeError: CUDA out of memory"
    assert "Traceback" in out.getvalue(), "the first traceback seen must still be shown"


def test_quiet_prints_the_failures_and_nothing_else() -> None:
    out = io.StringIO()
    bar = _ProgressBar(out, bar=False)
    bar(snap(4, 1.0, running=2, pending=2))
    assert out.getvalue() == ""
    bar(snap(4, 2.0, failures=(trial(1, error="killed"),), failed=1, running=1))
    bar.close()
    assert out.getvalue() == "trial main#1 failed: killed\n"


def test_on_a_terminal_one_line_is_rewritten_and_close_ends_it() -> None:
    term = Terminal()
    bar = _ProgressBar(term)
    bar(snap(4, 1.0, running=2, pending=2))
    first = term.getvalue()
    assert first.startswith("\r[") and "\n" not in first
    bar(snap(4, 2.0, running=1, completed=1, pending=2))
    assert "\n" not in term.getvalue()
    shown = term.getvalue()[len(first) + 1:].rstrip(" ")  # the line on screen now
    # A failure blanks the live line, prints itself on a line of its own, then the line again.
    bar(snap(4, 3.0, failures=(trial(1, error="killed"),), completed=1, failed=1, pending=2))
    text = term.getvalue()
    cleared = "\r" + " " * len(shown) + "\r"
    assert cleared + "trial main#1 failed: killed\n\r[" in text
    bar.close()
    assert term.getvalue().endswith(" | 0:03, ETA 0:03\n")
    assert term.getvalue().count("\n") == 2


def test_on_a_terminal_a_long_line_is_cut_and_close_without_a_line_writes_nothing() -> None:
    term = Terminal()
    bar = _ProgressBar(term)
    bar(snap(4, 1.0, outage="x" * 300, running=1, pending=3))
    assert len(term.getvalue()) == 1 + 200
    quiet = Terminal()
    q = _ProgressBar(quiet, bar=False)
    q(snap(failures=(trial(0, error="boom"),)))
    q.close()
    assert quiet.getvalue() == "trial main#0 failed: boom\n"


def test_a_shorter_line_overwrites_all_of_a_longer_one() -> None:
    term = Terminal()
    bar = _ProgressBar(term)
    bar(snap(4, 1.0, best=trial(0, value=0.123456), outage="store down", running=1,
             completed=1, pending=2))
    long_len = len(term.getvalue()) - 1
    bar(snap(4, 2.0, best=trial(0, value=0.123456), running=1, completed=1, pending=2))
    second = term.getvalue()[long_len + 1:]
    assert second.startswith("\r[") and len(second) == 1 + long_len
    assert second.rstrip(" ").endswith("| 0:02, ETA -")


def test_progress_done_counts_the_final_states() -> None:
    p: Any = snap(9, completed=2, infeasible=1, failed=3, running=2, pending=1)
    assert p.done == 6
