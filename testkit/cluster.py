"""A scaled-out Atelier on one machine: a real redis-server, render workers and webhook front ends,
each its own process, behind a round-robin balancer, all talking to one Bot API emulator.

Started and killed like in production; for the scale-out tests and the scale-out benchmark.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from redis import Redis

from testkit.balancer import Balancer
from testkit.emulator import BotAPIEmulator
from testkit.local_run import BotProcess
from testkit.redis_server import RedisServer, free_port

SECRET = "scale-out-webhook-secret"


class Cluster:
    def __init__(self, folder: Path, emulator: BotAPIEmulator, front_ends: int = 2, **settings) -> None:
        self.folder, self.emulator = folder, emulator
        self.redis_server = RedisServer(folder / "redis").start()
        self.redis = Redis.from_url(self.redis_server.url)
        self.base_settings = settings | {"backend": "redis", "redis_url": self.redis_server.url}
        self.ports = [free_port() for _ in range(front_ends)]
        self.balancer = Balancer([f"http://127.0.0.1:{port}" for port in self.ports]).start()
        self.front_ends: list[BotProcess | None] = [None] * front_ends
        self.workers: list[BotProcess] = []
        self._starts = 0

    def start(self, workers: int) -> Cluster:
        """Workers and front ends, started side by side."""
        with ThreadPoolExecutor(4) as starting:
            list(starting.map(lambda _: self.start_worker(), range(workers)))
            list(starting.map(self.start_front_end, range(len(self.front_ends))))
        return self

    def settings(self, **overrides) -> dict:
        return self.base_settings | overrides

    def _folder(self, name: str) -> Path:
        self._starts += 1
        return self.folder / f"{name}-{self._starts}"

    def start_front_end(self, index: int) -> BotProcess:
        process = BotProcess(
            self.emulator, self._folder(f"front-{index}"), **self.settings(
                webhook_url=f"{self.balancer.url}/hook", webhook_listen="127.0.0.1",
                webhook_port=self.ports[index], webhook_secret=SECRET,
            ),
        )  # fmt: skip
        process.wait_for_output("Atelier is running")
        self.front_ends[index] = process
        return process

    def start_worker(self) -> BotProcess:
        process = BotProcess(
            self.emulator, self._folder("worker"), module="bot.render_worker", **self.settings()
        )
        process.wait_for_output("render worker ready", timeout=120)
        self.workers.append(process)
        return process

    def kill(self, process: BotProcess) -> None:
        process.kill_group()
        if process in self.workers:
            self.workers.remove(process)
        self.front_ends = [None if front is process else front for front in self.front_ends]

    def keys_of(self, user_id: int) -> list[str]:
        """Every key that names the user, wherever it is."""
        return [key.decode() for key in self.redis.scan_iter(count=1000) if f":{user_id}:" in key.decode()]

    def local_pictures_of(self, user_id: int) -> dict[int, list[Path]]:
        """Front end index -> the user's pictures and results on its disk."""
        return {
            index: [
                path
                for kind in ("pictures", "results")
                for path in (front.data_dir / kind / str(user_id)).glob("*")
            ]
            for index, front in enumerate(self.front_ends)
            if front is not None
        }

    def stop(self) -> None:
        for process in [*self.front_ends, *self.workers]:
            if process is not None:
                process.kill_group()
        self.balancer.stop()
        self.redis.close()
        self.redis_server.stop()
