"""The update processor: users in parallel, each user's updates one at a time and in order."""

import asyncio

from telegram import Chat, Message, Update, User

from bot.updates import PerUserUpdateProcessor


def _update(update_id: int, user_id: int) -> Update:
    user = User(user_id, "u", is_bot=False)
    message = Message(update_id, date=None, chat=Chat(user_id, "private"), from_user=user, text="x")
    return Update(update_id, message=message)


def test_users_run_in_parallel_and_each_user_in_order():
    async def scenario() -> list[str]:
        processor = PerUserUpdateProcessor()
        events: list[str] = []

        async def handle(name: str, seconds: float) -> None:
            events.append(f"{name} start")
            await asyncio.sleep(seconds)
            events.append(f"{name} end")

        await asyncio.gather(
            processor.process_update(_update(1, 7), handle("a1", 0.2)),
            processor.process_update(_update(2, 7), handle("a2", 0.0)),
            processor.process_update(_update(3, 8), handle("b1", 0.0)),
        )
        assert not processor._locks  # no lock outlives its user's updates
        return events

    events = asyncio.run(scenario())
    assert events.index("b1 end") < events.index("a1 end")  # user 8 did not wait for user 7
    assert events.index("a1 end") < events.index("a2 start")  # user 7's second update waited
