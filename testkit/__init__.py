"""Test equipment, kept out of the product: the Bot API emulator, running the bot against it, the stub
engine, sample pictures, and the offline demo (``make demo``). Tests and benchmarks import it; the
bot and the engine never do, and the Docker image does not contain it."""
