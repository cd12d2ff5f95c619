"""Many annotators at once over HTTP: real orchestrator processes on PostgreSQL.

20 annotators (one thread and one client each) claim and decide 1,000 items together in
single-review mode. Every item must end with exactly one standing decision, no decision
may be lost, no call may fail with a 5xx, a replayed stale decision gets 409, and an
expired lease returns its item to the pool. Each test runs against one orchestrator
process and against two processes on the same database, the annotators split between
them (the queue's guarantees live in the database, not in a process).
"""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from regrasp.api.accounts import UserCreate
from regrasp.api.review import DecisionCreate
from regrasp.clients.orchestrator import OrchestratorClient
from regrasp.platform.errors import Conflict
from regrasp.platform.store.db.engine import make_engine, session_scope
from regrasp.platform.store.db.tables import ReviewItem
from tests.harness.annotators import annotate, standing_reviews
from tests.harness.databases import fresh_postgres_database
from tests.harness.processes import start_orchestrator
from tests.harness.seeders import bare_dataset, seed_round

#: A long end-to-end run: `make test-fast` leaves it out, `make test` runs it.
pytestmark = pytest.mark.slow

ADMIN = ("lead", "lead-password-1")
PASSWORD = "annotator-pw-1"
ANNOTATORS = 20
ITEMS = 1000


@pytest.fixture(scope="module", params=[1, 2], ids=["1-process", "2-processes"])
def orchestrator(request, tmp_path_factory):
    """The orchestrator URLs (one per process) and an engine on their database, shared by
    the module's tests (each seeds its own dataset and round, and its own annotators)."""
    tmp_path = tmp_path_factory.mktemp(f"orchestrator{request.param}")
    with fresh_postgres_database() as postgres_url:
        yield from _orchestrators(request.param, postgres_url, tmp_path)


def _orchestrators(processes: int, postgres_url: str, tmp_path):  # type: ignore[no-untyped-def]
    servers = []
    engine = make_engine(postgres_url)
    try:
        # One after the other: the first migrates the database and creates the admin.
        for k in range(processes):
            servers.append(
                start_orchestrator(
                    database_url=postgres_url,
                    store_url=f"file://{tmp_path / 'objects'}",
                    data_dir=tmp_path / f"data{k}",
                    admin=ADMIN,
                )
            )
        yield [s.url for s in servers], engine
    finally:
        engine.dispose()
        for server in servers:
            server.stop()


def _create_users(url: str, names: list[str]) -> None:
    with OrchestratorClient(url) as admin:
        admin.login(*ADMIN)
        for name in names:
            admin.create_user(UserCreate(username=name, password=PASSWORD))


def _clients(urls: list[str], names: list[str]) -> list[OrchestratorClient]:
    """Logged-in clients, client k on process k % len(urls)."""
    _create_users(urls[0], names)
    clients = []
    for k, name in enumerate(names):
        client = OrchestratorClient(urls[k % len(urls)])
        client.login(name, PASSWORD)
        clients.append(client)
    return clients


def test_twenty_annotators_decide_a_thousand_items_exactly_once(orchestrator):
    urls, engine = orchestrator
    with session_scope(engine) as session:
        dataset = bare_dataset(session, name="queue", images=ITEMS)
        round_id = seed_round(session, dataset_id=dataset)
    with session_scope(engine) as session:
        items = session.scalar(sa.select(sa.func.count()).where(ReviewItem.round_id == round_id))
    assert items == ITEMS  # every seeded image is flagged

    names = [f"annotator{k}" for k in range(ANNOTATORS)]
    _create_users(urls[0], names)
    run = annotate(
        urls,
        round_id,
        [(name, PASSWORD) for name in names],
        decide=lambda item: "annotation_error" if item.image_id % 7 == 0 else "true_negative",
        replay_every=10,  # replay a decision now and then: it is stale, so 409
    )

    assert not run.failures, run.failures[:3]
    assert run.server_errors == 0 and run.unexpected_4xx == 0, run.statuses
    decided = [item for item, _ in run.decided]
    # Every item decided by exactly one annotator, as the annotators themselves saw it...
    assert len(decided) == ITEMS and len(set(decided)) == ITEMS
    assert run.replays_refused, "the stale replays must have been answered"
    # ...and as the database keeps it: one standing review per item, none lost.
    with session_scope(engine) as session:
        kept = standing_reviews(session, round_id)
    assert set(kept.per_item) == set(decided) and set(kept.per_item.values()) == {1}
    assert kept.review_ids == {review for _, review in run.decided}
    assert kept.states == {"decided": ITEMS}


def test_expired_lease_returns_the_item_and_the_late_decision_is_refused(orchestrator):
    urls, engine = orchestrator
    with session_scope(engine) as session:
        dataset = bare_dataset(session, name="leases", images=3)
        round_id = seed_round(session, dataset_id=dataset)
    ana, ben = _clients(urls, ["ana", "ben"])  # on different processes when there are two
    held = ana.claim_next(round_id, lease_seconds=1)
    assert held is not None
    others = ben.claim_next(round_id)
    assert others is not None and others.id != held.id  # a live lease is not handed out
    ben.release(others.id)
    time.sleep(1.5)
    # Ana's lease expired: the item is back in the pool and ben (priority order) gets it.
    taken = ben.claim_next(round_id)
    assert taken is not None and taken.id == held.id and taken.version > held.version
    late = DecisionCreate(item_version=held.version, decision="true_negative", seconds_taken=9)
    with pytest.raises(Conflict):
        ana.decide(held.id, late)
    ben.decide(
        taken.id,
        DecisionCreate(item_version=taken.version, decision="true_negative", seconds_taken=2),
    )
    ana.close()
    ben.close()
