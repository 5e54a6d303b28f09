"""Reading a run's JSONL log, finished or still being written: nothing here runs during
training (the plot sink calls ``plot`` once, when the run has ended).

``runlog`` (read_log: the records, report lines parsed on first use), ``runs`` (Segment:
one process; Run: its segments, redone iterations superseded), ``series`` (the numbers a
plot draws), ``summary`` (a run's key figures, as text), ``plot`` (the progress plot,
matplotlib), ``watch`` (following a live log) and ``cli`` (the ``trainprogress`` command).
"""
