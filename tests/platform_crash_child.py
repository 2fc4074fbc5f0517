"""Child process for the SIGKILL test: writes bursts of commands forever, reporting commits.

Usage: python tests/platform_crash_child.py DB_PATH SEED. After every explicit flush it prints
``committed <seq>`` (flushed to stdout): everything up to that seq is committed on disk.
"""

from __future__ import annotations

import asyncio
import random
import sys

from friendsim.platform import Platform, PlatformError


async def main(path: str, seed: int) -> None:
    rng = random.Random(seed)
    p = await Platform.open(path, batch_size=50)
    agents = [f"u{i}" for i in range(30)]
    for a in agents:
        await p.register_agent(a, name=a, attributes={"g": str(rng.randrange(3))})
    posts = 0
    while True:
        for _ in range(rng.randrange(100, 400)):
            a = rng.choice(agents)
            r = rng.random()
            try:
                if r < 0.35 or posts == 0:
                    parent = rng.randint(1, posts) if posts and r < 0.1 else None
                    posts = (
                        await p.create_post(
                            a,
                            text="x" * rng.randrange(1, 200),
                            topic=f"t{rng.randrange(8)}",
                            parent_id=parent,
                        )
                    ).post_id
                elif r < 0.75:
                    await p.vote(a, rng.randint(1, posts), rng.choice((1, -1, 0)))
                elif r < 0.85:
                    await p.follow(a, rng.choice(agents))
                else:
                    await p.send_dm(a, rng.choice(agents), text="hello")
            except PlatformError:
                pass
        p.clock.advance(1.0)
        seq = await p.flush()
        sys.stdout.write(f"committed {seq}\n")
        sys.stdout.flush()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
