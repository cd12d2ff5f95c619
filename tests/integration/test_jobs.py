"""The trainer's job queue on SQLite and PostgreSQL: claims, heartbeats, stale jobs, cancel."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from regrasp.learn import queue as jobs
from regrasp.platform.errors import Conflict, InvalidInput, NotFound
from regrasp.platform.store.db.engine import make_session_factory, session_scope
from regrasp.platform.store.db.tables import JobState


@pytest.fixture
def factory(migrated_engine):
    return make_session_factory(migrated_engine)


def _submit(factory, count: int, kind: str = "train", **options) -> list[int]:
    with session_scope(factory) as s:
        return [jobs.submit(s, kind, {"n": i}, **options).id for i in range(count)]


def _claim(factory, worker: str, **options):
    with session_scope(factory) as s:
        job = jobs.claim(s, worker, **options)
        return None if job is None else (job.id, job.attempts, job.state, job.worker_id)


def test_claim_takes_oldest_queued_job_and_marks_it_running(factory):
    first, second = _submit(factory, 2)
    assert _claim(factory, "w1") == (first, 1, JobState.running, "w1")
    assert _claim(factory, "w2") == (second, 1, JobState.running, "w2")
    assert _claim(factory, "w3") is None
    with session_scope(factory) as s:
        job = jobs.get(s, first)
        assert job.started_at is not None and job.heartbeat_at is not None


def test_claim_filters_by_kind_and_id(factory):
    train = _submit(factory, 1, "train")[0]
    evaluate = _submit(factory, 1, "evaluate")[0]
    assert _claim(factory, "w", kinds=["evaluate"])[0] == evaluate
    assert _claim(factory, "w", kinds=["evaluate"]) is None
    assert _claim(factory, "w", job_id=train + 100) is None
    assert _claim(factory, "w", job_id=train)[0] == train
    with pytest.raises(InvalidInput, match="unknown job kind"):
        _claim(factory, "w", kinds=["paint"])


def test_concurrent_claimers_never_share_a_job(factory):
    ids = set(_submit(factory, 24))
    taken: dict[str, list[int]] = {"a": [], "b": [], "c": []}
    start = threading.Barrier(len(taken))

    def work(name: str) -> None:
        start.wait()
        while (claimed := _claim(factory, name)) is not None:
            taken[name].append(claimed[0])

    threads = [threading.Thread(target=work, args=(name,)) for name in taken]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [job for got in taken.values() for job in got]
    assert sorted(everything) == sorted(ids)  # each job exactly once


def test_heartbeat_records_progress_only_for_the_owner(factory):
    job_id = _submit(factory, 1)[0]
    _claim(factory, "owner")
    with session_scope(factory) as s:
        assert jobs.heartbeat(s, job_id, "owner", progress=0.25, metrics={"epoch": 1})
        assert jobs.heartbeat(s, job_id, "owner", metrics={"loss": 0.5})
        assert not jobs.heartbeat(s, job_id, "intruder", progress=0.9)
    with session_scope(factory) as s:
        job = jobs.get(s, job_id)
        assert job.progress == 0.25
        assert job.metrics["epoch"] == 1 and job.metrics["loss"] == 0.5
        with pytest.raises(InvalidInput, match="progress"):
            jobs.heartbeat(s, job_id, "owner", progress=1.5)
        with pytest.raises(NotFound):
            jobs.heartbeat(s, job_id + 1, "owner")


def test_finish_and_fail_are_refused_to_a_worker_that_lost_the_job(factory):
    done, failed = _submit(factory, 2)
    _claim(factory, "w")
    _claim(factory, "w")
    with session_scope(factory) as s:
        assert not jobs.finish(s, done, "other", {"x": 1})
        assert jobs.record_result(s, done, "w", {"model_id": 7})
        assert jobs.finish(s, done, "w", {"accuracy": 0.5})
        assert jobs.fail(s, failed, "w", "boom")
        assert not jobs.heartbeat(s, done, "w")
    with session_scope(factory) as s:
        job = jobs.get(s, done)
        assert job.state == JobState.succeeded and job.progress == 1.0
        assert job.result == {"model_id": 7, "accuracy": 0.5}
        assert jobs.get(s, failed).state == JobState.failed
        assert jobs.get(s, failed).error == "boom"


def test_transient_failure_requeues_while_attempts_remain(factory):
    job_id = _submit(factory, 1, max_attempts=2)[0]
    _claim(factory, "w")
    with session_scope(factory) as s:
        assert jobs.fail(s, job_id, "w", "store unreachable", retry=True)
        assert jobs.get(s, job_id).state == JobState.queued
    assert _claim(factory, "w")[1] == 2
    with session_scope(factory) as s:
        assert jobs.fail(s, job_id, "w", "store unreachable", retry=True)
        assert jobs.get(s, job_id).state == JobState.failed


def test_release_returns_the_job_without_spending_an_attempt(factory):
    job_id = _submit(factory, 1)[0]
    _claim(factory, "w")
    with session_scope(factory) as s:
        assert jobs.release(s, job_id, "w")
        job = jobs.get(s, job_id)
        assert (job.state, job.attempts, job.worker_id) == (JobState.queued, 0, None)


def test_stale_job_is_requeued_then_fails_after_max_attempts(factory):
    job_id = _submit(factory, 1, max_attempts=2)[0]
    _claim(factory, "w1")
    later = datetime.now(UTC) + timedelta(minutes=5)
    with session_scope(factory) as s:
        assert jobs.requeue_stale(s, heartbeat_timeout=600, now=later) == []  # still fresh
        assert jobs.requeue_stale(s, heartbeat_timeout=60, now=later) == [job_id]
        assert jobs.requeue_stale(s, heartbeat_timeout=60, now=later) == []  # handled once
    assert _claim(factory, "w2") == (job_id, 2, JobState.running, "w2")
    with session_scope(factory) as s:
        assert not jobs.heartbeat(s, job_id, "w1")  # the first worker learns it lost the job
        assert jobs.heartbeat(s, job_id, "w2")
        even_later = datetime.now(UTC) + timedelta(minutes=10)
        assert jobs.requeue_stale(s, heartbeat_timeout=60, now=even_later) == [job_id]
    with session_scope(factory) as s:
        job = jobs.get(s, job_id)
        assert job.state == JobState.failed
        assert job.error.startswith("worker lost after 2 attempts")
        assert job.finished_at is not None


def test_cancel(factory):
    queued, running, finished = _submit(factory, 3)
    _claim(factory, "w", job_id=running)
    _claim(factory, "w", job_id=finished)
    with session_scope(factory) as s:
        jobs.finish(s, finished, "w", {})
        assert jobs.cancel(s, queued).state == JobState.cancelled
        assert jobs.cancel(s, queued).state == JobState.cancelled  # idempotent
        assert jobs.cancel(s, running).state == JobState.cancelled
        assert not jobs.heartbeat(s, running, "w")  # the worker stops
        assert not jobs.finish(s, running, "w", {})
        with pytest.raises(Conflict, match="succeeded"):
            jobs.cancel(s, finished)
        with pytest.raises(NotFound):
            jobs.cancel(s, finished + 10)
    assert _claim(factory, "w") is None  # a cancelled job is never claimed


def test_list_count_and_eta(factory):
    ids = _submit(factory, 3)
    _claim(factory, "w")
    with session_scope(factory) as s:
        assert [j.id for j in jobs.list_jobs(s)] == sorted(ids, reverse=True)
        assert jobs.count_jobs(s, state="queued") == 2
        assert [j.id for j in jobs.list_jobs(s, state="running")] == [ids[0]]
        job = jobs.get(s, ids[0])
        assert jobs.eta_seconds(job) is None  # no progress yet
        jobs.heartbeat(s, ids[0], "w", progress=0.25)
        job = jobs.get(s, ids[0])
        started = job.started_at if job.started_at.tzinfo else job.started_at.replace(tzinfo=UTC)
        # A quarter done in 60 s: three quarters to go take 180 s.
        assert jobs.eta_seconds(job, now=started + timedelta(seconds=60)) == pytest.approx(180)
        assert jobs.eta_seconds(jobs.get(s, ids[1])) is None
        with pytest.raises(InvalidInput):
            jobs.list_jobs(s, state="sleeping")


def test_a_worker_fails_the_model_of_a_job_lost_for_good(factory, file_store_url):
    """A job failed by `requeue_stale` (worker lost, no attempt left) takes its model with it:
    no model stays `training` with nothing left to train it."""
    from regrasp.learn.worker import Worker
    from regrasp.platform.store.db.tables import Job, Model, ModelStatus
    from regrasp.platform.store.objects import open_store

    with session_scope(factory) as s:
        model = Model(architecture="ggcnn", in_channels=1, status=ModelStatus.training)
        s.add(model)
        s.flush()
        old = datetime.now(UTC) - timedelta(hours=1)
        lost = Job(
            kind="train",
            state=JobState.running,
            worker_id="dead",
            heartbeat_at=old,
            attempts=3,
            max_attempts=3,
            result={"model_id": model.id},
        )
        s.add(lost)
        s.flush()
        ids = (lost.id, model.id)
    worker = Worker(factory, open_store(file_store_url), worker_id="w", heartbeat_timeout=60)
    assert worker.run_once() is None  # nothing to claim; the lost job was handled
    with session_scope(factory) as s:
        assert jobs.get(s, ids[0]).state == JobState.failed
        assert s.get(Model, ids[1]).status == ModelStatus.failed
