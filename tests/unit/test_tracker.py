"""JobTracker's transitions (no Dask, no store): which jobs in flight the gateway follows."""

from __future__ import annotations

import threading

from gateway.dask.tracker import JobTracker


def _missing_after_one_sweep(tracker: JobTracker, job_id: str) -> None:
    """Track ``job_id`` and have one reconciliation not find it."""
    tracker.track([job_id])
    found = tracker.reconcile(ready=[], live=[], unknown=[job_id], reread=lambda _: None)
    assert found.lost == [] and tracker.is_missing(job_id)


def test_track_returns_only_the_jobs_it_tracked_each_once():
    tracker = JobTracker()
    assert not tracker.any_tracked()
    assert tracker.track(["a", "b", "a"]) == ["a", "b"]
    assert tracker.track(["b", "c"]) == ["c"]  # b was sent already: not again
    assert tracker.is_tracked("a") and tracker.is_tracked("c")
    assert tracker.any_tracked()


def test_untrack_says_which_were_tracked():
    tracker = JobTracker()
    tracker.track(["a"])
    assert tracker.untrack(["a", "x"]) == ["a"]
    assert not tracker.is_tracked("a")
    assert tracker.untrack(["a"]) == []  # a second cancel finds nothing to stop
    assert tracker.track(["a"]) == ["a"]  # can be sent again


def test_untrack_ends_missing():
    tracker = JobTracker()
    _missing_after_one_sweep(tracker, "a")
    tracker.untrack(["a"])
    assert not tracker.is_missing("a")
    tracker.track(["a"])  # sent again: not lost at the next sweep, only missing
    found = tracker.reconcile(ready=[], live=[], unknown=["a"], reread=lambda _: None)
    assert found.lost == [] and tracker.is_tracked("a")


def test_untrack_all_leaves_fetches_running():
    tracker = JobTracker()
    tracker.track(["a", "b"])
    assert tracker.start_fetching("a")
    _missing_after_one_sweep(tracker, "b")
    tracker.untrack_all()
    assert not tracker.any_tracked()
    assert not tracker.is_missing("b")
    assert tracker.is_fetching("a")  # a fetch in progress ends by itself
    assert not tracker.start_fetching("a")


def test_start_fetching_once_per_fetch():
    tracker = JobTracker()
    tracker.track(["a"])
    assert tracker.start_fetching("a")
    assert not tracker.start_fetching("a")  # a second event while the fetch runs
    tracker.end_fetching(["a"], settled=[])
    assert not tracker.is_fetching("a")
    assert tracker.start_fetching("a")


def test_end_fetching_untracks_only_the_settled():
    tracker = JobTracker()
    tracker.track(["done", "slow"])
    assert tracker.start_fetching("done") and tracker.start_fetching("slow")
    tracker.end_fetching(["done", "slow"], settled=["done"])
    assert not tracker.is_fetching("done") and not tracker.is_fetching("slow")
    assert not tracker.is_tracked("done")
    assert tracker.is_tracked("slow")  # not done in time: its event or the sweep comes back


def test_end_fetching_of_a_job_untracked_meanwhile():
    tracker = JobTracker()
    tracker.track(["a"])
    tracker.start_fetching("a")
    tracker.untrack(["a"])  # cancelled while its outcome was fetched
    tracker.end_fetching(["a"], settled=["a"])
    assert not tracker.is_tracked("a") and not tracker.is_fetching("a")


def test_reconcile_fetches_ready_outcomes_not_already_fetching():
    tracker = JobTracker()
    tracker.track(["b"])
    tracker.start_fetching("b")
    found = tracker.reconcile(ready=["a", "b"], live=[], unknown=[], reread=lambda _: None)
    assert found.fetch == ["a"]
    assert tracker.is_tracked("a") and tracker.is_fetching("a")
    assert found.attached == [] and found.lost == []


def test_reconcile_attaches_live_untracked_jobs_still_active():
    tracker = JobTracker()
    tracker.track(["tracked"])
    stored = {"found": "job found", "tracked": "job tracked"}  # "recorded": done since
    reread_ids: list[str] = []

    def reread(job_id: str) -> str | None:
        reread_ids.append(job_id)
        return stored.get(job_id)

    found = tracker.reconcile(
        ready=[], live=["found", "tracked", "recorded"], unknown=[], reread=reread
    )
    assert found.attached == ["job found"]  # the job as re-read
    assert reread_ids == ["found", "recorded"]  # a tracked job is not read again
    assert tracker.is_tracked("found")
    assert not tracker.is_tracked("recorded")


def test_reconcile_loses_an_unknown_job_untracked_or_missing_twice():
    tracker = JobTracker()
    tracker.track(["sent"])
    found = tracker.reconcile(ready=[], live=[], unknown=["queued", "sent"], reread=lambda _: None)
    assert found.lost == ["queued"]  # the scheduler restarted: resubmit
    assert tracker.is_missing("sent") and tracker.is_tracked("sent")  # maybe just sent
    found = tracker.reconcile(ready=[], live=[], unknown=["sent"], reread=lambda _: None)
    assert found.lost == ["sent"]
    assert not tracker.is_tracked("sent") and not tracker.is_missing("sent")


def test_reconcile_clears_missing_marks_of_jobs_found_again():
    tracker = JobTracker()
    _missing_after_one_sweep(tracker, "a")
    tracker.reconcile(ready=[], live=["a"], unknown=[], reread=lambda _: "job")
    assert not tracker.is_missing("a") and tracker.is_tracked("a")
    found = tracker.reconcile(ready=[], live=[], unknown=["a"], reread=lambda _: None)
    assert found.lost == [] and tracker.is_missing("a")  # missing once again, not lost


def test_reconcile_reads_the_store_under_the_lock():
    """A recorder untracks a job after recording it; a reconciliation re-reads the job
    and tracks it in one step, so the untrack cannot fall between the two (which would
    leave a recorded job tracked for good)."""
    tracker = JobTracker()
    reading = threading.Event()
    untracked = threading.Event()

    def recorder() -> None:
        reading.wait(5)
        tracker.untrack(["a"])  # the job was recorded (after the re-read said active)
        untracked.set()

    thread = threading.Thread(target=recorder)
    thread.start()

    def reread(job_id: str) -> str:
        reading.set()
        assert not untracked.wait(0.2)  # the recorder waits for the reconciliation
        return "job"

    tracker.reconcile(ready=[], live=["a"], unknown=[], reread=reread)
    thread.join(5)
    assert untracked.is_set()
    assert not tracker.is_tracked("a")


def test_track_from_many_threads_sends_each_job_once():
    tracker = JobTracker()
    claimed: list[str] = []
    lock = threading.Lock()
    ids = [f"job{i}" for i in range(200)]

    def claim() -> None:
        newly = tracker.track(ids)
        with lock:
            claimed.extend(newly)

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert sorted(claimed) == sorted(ids)
