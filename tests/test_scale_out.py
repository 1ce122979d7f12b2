"""Scale-out with real parts: a real redis-server, two render workers and two webhook front ends (each
its own process) behind a round-robin balancer, driven through the Bot API emulator."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from bot import redis_keys, texts
from bot.redis_jobs import connect
from bot.redis_state import LEFT_ALONE_S, LOOK_EVERY_S, RedisUserStore
from bot.state import Album, ImageRef, UserState
from testkit.cluster import Cluster
from testkit.pictures import picture
from testkit.stubs import HQ_STEP_S, HQ_STEPS
from tests.bot_helpers import TEST_DEFAULTS, USER_IDS, image_size

QUEUE_LIMIT = 6


@pytest.fixture(scope="module")
def cluster(emulator, tmp_path_factory):
    settings = TEST_DEFAULTS | {
        "queue_limit": QUEUE_LIMIT,
        "result_claim_after_s": 2.0,
        "shutdown_grace_s": 1.0,
    }
    cluster = Cluster(tmp_path_factory.mktemp("scale"), emulator, **settings)
    try:
        yield cluster.start(workers=2)
    finally:
        cluster.stop()


def restore(cluster: Cluster) -> Cluster:
    """Two front ends and two workers, whatever a test killed."""
    for index, front in enumerate(cluster.front_ends):
        if front is None or front.process.poll() is not None:
            cluster.start_front_end(index)
    while len(cluster.workers) < 2:
        cluster.start_worker()
    cluster.balancer.pin(None)
    return cluster


@pytest.fixture()
def person(emulator, cluster):
    restore(cluster)
    return emulator.user(next(USER_IDS))


def hq_job(person) -> None:
    """A photo and a style with /hq armed: the stub's HQ render takes HQ_STEPS steps of HQ_STEP_S."""
    person.send_text("/hq")
    person.wait_text("High quality mode is on")
    person.send_photo(picture(120, 90, seed=1))
    person.send_photo(picture(60, 60, seed=2))
    person.wait_text("% done")  # a progress message: the job is running on a worker
    person.wait_text("s left")  # the engine's forecast crossed Redis


def test_two_pictures_across_both_front_ends(cluster, person):
    sent_before = len(cluster.balancer.sent_to)
    person.send_photo(picture(200, 150, seed=3))
    person.wait_text("Now send the <b>style</b>")
    person.send_photo(picture(90, 90, seed=4))
    photo = person.wait_photos(1)[0]
    assert image_size(photo.files["photo"]) == (200, 150)
    assert set(cluster.balancer.sent_to[sent_before:]) == {0, 1}  # the photo on one, the style on the other
    data = next(b["callback_data"] for row in photo.message["reply_markup"]["inline_keyboard"] for b in row
                if b["callback_data"].startswith("re:file:"))  # fmt: skip
    person.press(photo.message, data)  # the kept full size, from whichever front end gets the press
    document = person.api.wait_for(
        lambda: next((s for s in person.log() if s.method == "sendDocument"), None)
    )
    assert image_size(document.files["document"]) == (200, 150)


def test_an_album_whose_pictures_reach_both_front_ends(cluster, person):
    sent_before = len(cluster.balancer.sent_to)
    person.send_album([picture(110, 70, seed=16), picture(40, 40, seed=17), picture(50, 50, seed=18)])
    photo = person.wait_photos(1)[0]
    assert image_size(photo.files["photo"]) == (110, 70)
    assert "2 styles mixed" in photo.params["caption"]
    assert set(cluster.balancer.sent_to[sent_before:]) == {0, 1}


def accept_as_a_front_end_would(cluster: Cluster, user_id: int, update: dict) -> None:
    """Put an update in the user's inbox, as the webhook does before it answers 200."""

    async def accept() -> None:
        redis = connect(cluster.redis_server.url)
        await RedisUserStore(redis).accept(user_id, update["update_id"], json.dumps(update))
        await redis.aclose()

    asyncio.run(accept())


def test_an_update_left_by_a_front_end_that_died_comes_before_the_next(cluster, person):
    content = person.undelivered_photo(picture(120, 90, seed=14))  # accepted, then its front end died
    accept_as_a_front_end_would(cluster, person.user_id, content)
    person.send_photo(picture(60, 60, seed=15))  # the style, sent after it: the other front end gets it
    photo = person.wait_photos(1)[0]
    assert image_size(photo.files["photo"]) == (120, 90)  # the content came first, as it was sent
    assert sum("Now send the <b>style</b>" in text for text in person.texts()) == 1  # handled once


def test_an_update_left_alone_is_handled_by_another_front_end(cluster, person):
    accepted_at = time.monotonic()
    accept_as_a_front_end_would(cluster, person.user_id, person.undelivered_photo(picture(80, 80, seed=19)))
    person.wait_text("Now send the <b>style</b>", timeout=LEFT_ALONE_S + 3 * LOOK_EVERY_S)
    assert time.monotonic() - accepted_at >= LEFT_ALONE_S  # a slow front end is given its time first
    assert cluster.redis.zcard(redis_keys.INBOXES) == 0


def leave_an_album_as_a_dead_front_end_would(cluster: Cluster, person, pictures: list[bytes]) -> None:
    """The user's saved state holds an album still arriving; the front end with its timer is gone."""
    album = Album(f"album-left-{person.user_id}", person.user_id)
    for data in pictures:
        message = person.undelivered_photo(data)["message"]
        largest = message["photo"][-1]
        ref = ImageRef(largest["file_id"], largest["file_unique_id"], largest["width"], largest["height"])
        album.pictures.append((message["message_id"], ref))

    async def save() -> None:
        redis = connect(cluster.redis_server.url)
        await RedisUserStore(redis).save(person.user_id, UserState(album=album))
        await redis.aclose()

    asyncio.run(save())


def test_an_album_whose_front_end_died_is_handed_over_by_another(cluster, person):
    left_at = time.monotonic()
    leave_an_album_as_a_dead_front_end_would(cluster, person, [picture(130, 80, seed=20), picture(seed=21)])
    photo = person.wait_photos(1, timeout=LEFT_ALONE_S + 3 * LOOK_EVERY_S + 30)[0]
    assert time.monotonic() - left_at >= LEFT_ALONE_S  # its own front end is given its time first
    assert image_size(photo.files["photo"]) == (130, 80)  # content then style, in the album's order
    assert cluster.redis.zscore(redis_keys.ALBUMS, person.user_id) is None


def test_a_worker_killed_mid_job_hands_it_to_the_other(cluster, person):
    hq_job(person)
    running = [w for w in cluster.workers if f"for user {person.user_id} " in w.output()]
    victim = running[0] if running else cluster.workers[0]
    killed_at = time.monotonic()
    cluster.kill(victim)
    photo = person.wait_photos(1, timeout=30)[0]
    assert time.monotonic() - killed_at < 15  # heartbeat 3 s + sweep 1 s + a fresh 3 s render, with room
    assert photo.params["caption"].startswith("High quality")


def test_a_front_end_killed_before_the_result_leaves_it_to_the_other(cluster, person):
    cluster.balancer.pin(0)
    hq_job(person)
    cluster.kill(cluster.front_ends[0])
    photo = person.wait_photos(1, timeout=30)[0]
    assert photo.params["caption"].startswith("High quality")
    time.sleep(3)  # longer than the claim timeout: a second delivery would have happened by now
    assert len(person.photos()) == 1


def test_a_result_whose_sending_failed_is_taken_over_and_sent_once(cluster, person, emulator):
    emulator.fail_next("sendPhoto", status=400)  # a refusal is not retried: the entry stays unacknowledged
    person.send_photo(picture(100, 80, seed=5))
    person.send_photo(picture(50, 50, seed=6))
    photo = person.wait_photos(1, timeout=20)[0]
    assert image_size(photo.files["photo"]) == (100, 80)
    time.sleep(3)
    assert len(person.photos()) == 1


def test_cancel_reaches_a_running_hq_job_and_keeps_its_best_image(cluster, person):
    hq_job(person)
    person.send_text("/cancel")
    ask = person.wait_message("Stop the high")
    keep = next(b["callback_data"] for row in ask.message["reply_markup"]["inline_keyboard"] for b in row
                if b["callback_data"].startswith("cancel:keep"))  # fmt: skip
    pressed_at = time.monotonic()
    person.press(ask.message, keep)
    photo = person.wait_photos(1)[0]
    assert photo.params["caption"] == texts.CANCELLED_KEEP
    assert time.monotonic() - pressed_at < HQ_STEPS * HQ_STEP_S / 2  # stopped long before its end


def test_one_job_per_user_and_the_cap_hold_across_replicas(cluster, person, emulator):
    for worker in list(cluster.workers):  # nothing finishes while the users pile up
        cluster.kill(worker)
    people = [emulator.user(next(USER_IDS)) for _ in range(20)]

    def two_pictures(someone) -> None:
        someone.send_photo(picture(64, 48, seed=someone.user_id))
        someone.wait_text("Now send")
        someone.send_photo(picture(32, 32, seed=7))
        someone.send_photo(picture(64, 48, seed=8))  # a second job while the first waits
        someone.send_photo(picture(32, 32, seed=9))

    with ThreadPoolExecutor(10) as crowd:
        list(crowd.map(two_pictures, people))

    def refusals(someone) -> list[str]:
        return [t for t in someone.texts() if t.startswith((full, texts.BUSY))]

    full = texts.QUEUE_FULL.split("(")[0]
    every_second_job_refused = QUEUE_LIMIT + 2 * (len(people) - QUEUE_LIMIT)
    emulator.wait_for(lambda: sum(len(refusals(someone)) for someone in people) == every_second_job_refused)
    accepted = [someone for someone in people if len(refusals(someone)) == 1]
    assert len(accepted) == QUEUE_LIMIT
    assert all(refusals(someone) == [texts.BUSY] for someone in accepted)
    assert cluster.redis.zcard(redis_keys.IN_FLIGHT) == QUEUE_LIMIT
    restore(cluster)  # the queued jobs finish once workers are back
    emulator.wait_for(lambda: all(someone.photos() for someone in accepted), timeout=60)
    assert sum(len(someone.photos()) for someone in people) == QUEUE_LIMIT


def test_queued_jobs_survive_a_redis_restart(cluster, person, emulator):
    for worker in list(cluster.workers):
        cluster.kill(worker)
    person.send_photo(picture(80, 60, seed=10))
    person.send_photo(picture(40, 40, seed=11))
    queued = f"saq:{redis_keys.QUEUES['fast']}:queued"
    emulator.wait_for(lambda: cluster.redis.llen(queued) == 1)
    cluster.redis_server.kill()  # kill -9: only the append-only file remains
    cluster.redis_server.start()
    cluster.start_worker()
    photo = person.wait_photos(1, timeout=60)[0]
    assert image_size(photo.files["photo"]) == (80, 60)


def test_forget_leaves_no_key_for_the_user_and_no_picture_on_any_front_end(cluster, person):
    person.send_photo(picture(80, 60, seed=12))
    person.send_photo(picture(40, 40, seed=13))
    person.wait_photos(1)
    person.send_text("/alpha 0.5")
    person.wait_text("0.5")
    assert cluster.keys_of(person.user_id)  # their state and kept result
    assert all(cluster.local_pictures_of(person.user_id).values())  # each front end fetched a picture
    person.send_text("/forget")
    person.wait_text(texts.FORGET_DONE[:20])
    time.sleep(0.5)  # the front end saves nothing after the reply; the other hears of it at once
    assert cluster.keys_of(person.user_id) == []
    assert not any(cluster.local_pictures_of(person.user_id).values())


def test_sigterm_drains_a_worker(cluster):
    worker = cluster.workers[0]
    os.killpg(worker.process.pid, signal.SIGTERM)
    assert worker.wait(30) == 0
    assert "render worker stopped" in worker.output()
    cluster.workers.remove(worker)
