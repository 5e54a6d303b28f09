"""DenseReports: which active anomalies still call for dense reports.

Dense reports (every ``AnomalyConfig.dense_percent``) are for a condition that is new or
getting worse. An anomaly's episode starts dense; each report counts for every episode on
the dense schedule, and after ``steady_after_reports`` of them an episode that held steady
(same kind, same ``subject``, same ``since_iter``) goes back to the regular schedule. It
stays in every report, as "still: <message>", until it clears. If its ``severity`` rises
over ``worse_factor`` times its highest value while it was dense, it is dense again (and an
anomaly report is due at once); a new subject (another rank named) starts a new episode.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..report import Anomaly
from .config import AnomalyConfig

STILL = "still: "


@dataclass
class _Episode:
    """One active anomaly's dense-report state."""

    since_iter: int
    subject: str
    level: float | None  # the highest severity seen while dense: what "worse" is measured from
    dense_reports: int = 0  # reports counted on the dense schedule since it was raised or got worse

    def dense(self, steady_after: int) -> bool:
        return self.dense_reports < steady_after


class DenseReports:
    """Keeps each active anomaly's episode (by kind) and says whether any of them still wants
    dense reports (``wanted``). ``judge`` takes the anomalies active now, at every check and
    cross-rank exchange; ``reported`` counts a report; ``shown`` gives the anomalies as a
    report shows them."""

    __slots__ = ("_episodes", "_steady_after", "_worse_factor")

    def __init__(self, config: AnomalyConfig) -> None:
        self._steady_after = config.steady_after_reports
        self._worse_factor = config.worse_factor
        self._episodes: dict[str, _Episode] = {}

    @property
    def wanted(self) -> bool:
        """Whether an active anomaly is new or getting worse: the dense schedule is on."""
        return any(e.dense(self._steady_after) for e in self._episodes.values())

    def judge(self, anomalies: tuple[Anomaly, ...]) -> bool:
        """Take the anomalies active now (kinds absent have cleared). Returns whether a steady
        one got worse: it is dense again, and an anomaly report is due."""
        episodes: dict[str, _Episode] = {}
        worse = False
        for anomaly in anomalies:
            episode = self._episodes.get(anomaly.kind)
            if episode is None or (episode.since_iter, episode.subject) != (anomaly.since_iter, anomaly.subject):
                episode = _Episode(anomaly.since_iter, anomaly.subject, anomaly.severity)
            elif self._worse(episode, anomaly.severity):
                worse = worse or not episode.dense(self._steady_after)
                episode.level, episode.dense_reports = anomaly.severity, 0
            elif episode.dense(self._steady_after) and anomaly.severity is not None:
                episode.level = anomaly.severity if episode.level is None else max(episode.level, anomaly.severity)
            episodes[anomaly.kind] = episode
        self._episodes = episodes
        return worse

    def _worse(self, episode: _Episode, severity: float | None) -> bool:
        if severity is None or episode.level is None:
            return False
        return severity > self._worse_factor * episode.level

    def reported(self) -> None:
        """A report was made: it counts for every episode on the dense schedule."""
        for episode in self._episodes.values():
            if episode.dense(self._steady_after):
                episode.dense_reports += 1

    def shown(self, anomalies: tuple[Anomaly, ...]) -> tuple[Anomaly, ...]:
        """The anomalies as a report shows them: a steady one marked, its message "still: ..."."""
        out = []
        for anomaly in anomalies:
            episode = self._episodes.get(anomaly.kind)
            steady = episode is not None and not episode.dense(self._steady_after)
            if steady and episode.since_iter == anomaly.since_iter:
                anomaly = replace(anomaly, steady=True, message=STILL + anomaly.message)
            out.append(anomaly)
        return tuple(out)
