"""DenseReports: dense reports for an anomaly that is new or getting worse, the regular
schedule for one that holds steady."""

from trainprogress.anomaly.config import AnomalyConfig
from trainprogress.anomaly.dense import DenseReports
from trainprogress.report import Anomaly

CONFIG = AnomalyConfig(steady_after_reports=3, worse_factor=1.5)


def straggler(severity, subject="rank 3", since=6):
    return Anomaly("straggler", f"straggler {subject}: data {severity} ms", since, severity=severity, subject=subject)


def reports(dense, anomalies, n):
    """``n`` reports with ``anomalies`` active: whether each found the dense schedule on."""
    wanted = []
    for _ in range(n):
        dense.judge(anomalies)
        wanted.append(dense.wanted)
        dense.reported()
    return wanted


def test_a_steady_anomaly_is_dense_for_three_reports_then_shown_as_still():
    dense = DenseReports(CONFIG)
    assert not dense.wanted and reports(dense, (straggler(40.0),), 5) == [True, True, True, False, False]
    [shown] = dense.shown((straggler(44.0),))  # jitter under 1.5x is not worse
    assert shown.steady and shown.message == "still: straggler rank 3: data 44.0 ms" and shown.since_iter == 6
    assert not dense.judge((straggler(59.0),)) and not dense.wanted


def test_worse_by_the_factor_is_dense_again_and_measured_from_its_highest_dense_level():
    dense = DenseReports(CONFIG)
    dense.judge((straggler(30.0),))
    assert reports(dense, (straggler(40.0),), 3) == [True, True, True]  # level: 40, the highest while dense
    assert not dense.judge((straggler(59.0),))
    assert dense.judge((straggler(61.0),)) and dense.wanted  # over 1.5 x 40: an anomaly report is due
    assert not dense.shown((straggler(61.0),))[0].steady
    assert not dense.judge((straggler(61.0),))  # said once
    assert reports(dense, (straggler(61.0),), 4) == [True, True, True, False]


def test_another_subject_or_a_new_episode_is_new_and_a_cleared_one_is_forgotten():
    dense = DenseReports(CONFIG)
    reports(dense, (straggler(40.0),), 3)
    assert not dense.wanted
    dense.judge((straggler(40.0, "ranks 2, 3"),))  # another rank is slow too
    assert dense.wanted
    reports(dense, (straggler(40.0, "ranks 2, 3"),), 3)
    dense.judge(())  # cleared
    assert not dense.wanted and dense.shown((straggler(40.0),)) == (straggler(40.0),)
    dense.judge((straggler(40.0, since=90),))  # raised again: a new episode
    assert dense.wanted


def test_each_kind_has_its_own_episode_and_an_ungraded_one_never_gets_worse():
    dense = DenseReports(CONFIG)
    nan = Anomaly("nonfinite_loss", "loss is nan", 100)
    reports(dense, (nan,), 3)
    assert not dense.wanted and not dense.judge((nan,))
    both = (nan, straggler(40.0))
    assert reports(dense, both, 4) == [True, True, True, False]
    assert [a.steady for a in dense.shown(both)] == [True, True]
