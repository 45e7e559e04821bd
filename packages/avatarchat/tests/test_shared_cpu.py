import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from avatarchat.cpu import cgroup_quota, cpu_budget, default_threads, lower_thread_priority


def _v2(tmp_path: Path, text: str) -> Path:
    (tmp_path / "cpu.max").write_text(text)
    return tmp_path


def _v1(tmp_path: Path, quota: str, period: str = "100000") -> Path:
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text(quota + "\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text(period + "\n")
    return tmp_path


@pytest.mark.parametrize(
    ("text", "expected"),
    [("max 100000\n", None), ("150000 100000\n", 1.5), ("100000 100000", 1.0), ("junk", None)],
)
def test_cgroup_v2_quota(tmp_path: Path, text: str, expected: float | None) -> None:
    assert cgroup_quota(_v2(tmp_path, text)) == expected


def test_cgroup_v1_quota(tmp_path: Path) -> None:
    assert cgroup_quota(_v1(tmp_path, "250000")) == 2.5
    assert cgroup_quota(_v1(_fresh(tmp_path), "-1")) is None


def _fresh(tmp_path: Path) -> Path:
    path = tmp_path / "fresh"
    path.mkdir()
    return path


def test_no_cgroup_files_means_no_quota(tmp_path: Path) -> None:
    assert cgroup_quota(tmp_path) is None


def test_budget_is_capped_by_quota_and_rounded_up(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("os.sched_getaffinity", lambda _pid: {0, 1, 2, 3, 4, 5, 6, 7})
    assert cpu_budget(tmp_path) == 8
    assert cpu_budget(_v2(tmp_path, "150000 100000")) == 2
    assert default_threads(root=tmp_path) == 1


def test_budget_follows_affinity(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("os.sched_getaffinity", lambda _pid: {3})
    assert cpu_budget(tmp_path) == 1
    assert default_threads(root=tmp_path) == 1  # never zero
    monkeypatch.setattr("os.sched_getaffinity", lambda _pid: {0, 1})
    assert default_threads(root=tmp_path) == 1
    assert default_threads(reserve=0, root=tmp_path) == 2


def _own_nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def test_lower_thread_priority_is_per_thread_and_only_ever_lowers_it() -> None:
    main = _own_nice()

    def niced(nice: int) -> tuple[int, int]:
        lower_thread_priority(nice)
        first = _own_nice()
        lower_thread_priority(nice - 3)  # asking for a higher priority changes nothing
        return first, _own_nice()

    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(niced, main + 7).result() == (main + 7, main + 7)
    assert _own_nice() == main  # the calling thread keeps its own

    with ThreadPoolExecutor(1, initializer=lower_thread_priority, initargs=(main + 5,)) as pool:
        assert pool.submit(_own_nice).result() == main + 5
        # a thread it starts inherits it
        assert pool.submit(lambda: ThreadPoolExecutor(1).submit(_own_nice).result()).result() == (
            main + 5
        )
