#!/usr/bin/env python3
"""A storm of wrong-password sign-ins, open loop: RATE a second for SECONDS, each on a new
connection from its own loopback source address, so a per-address rate limit never fires, and
each for its own email, so a per-account limit never fires either.

    signin_storm.py PORT RATE SECONDS FIRST_ADDRESS_INDEX OUT.tsv

Address n is 127.1.0.0 + n (skipping .0 and .255 last octets); give each storm of one run its
own FIRST_ADDRESS_INDEX. Writes one line per sign-in: seconds since the start at which it was
sent, latency in seconds, HTTP status (0: no answer, a refused or reset connection, or a timeout).
"""

import asyncio
import sys
import time

TIMEOUT = 30.0


def address(n: int) -> str:
    # 254 usable last octets per /24, starting at 127.1.0.1.
    block, host = divmod(n, 254)
    return f"127.{1 + block // 256}.{block % 256}.{host + 1}"


async def signin(port: int, n: int, sent: float, results: list) -> None:
    body = (
        '{"email":"storm-%d@example.com","password":"not-the-password-%d"}' % (n, n)
    ).encode()
    req = (
        b"POST /api/auth/signin HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nConnection: close\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    ) + body
    status = 0
    writer = None
    try:
        async def exchange() -> bytes:
            nonlocal writer
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, local_addr=(address(n), 0)
            )
            writer.write(req)
            await writer.drain()
            return await reader.readline()

        line = await asyncio.wait_for(exchange(), TIMEOUT)
        parts = line.split(b" ", 2)
        if len(parts) >= 2 and parts[1].isdigit():
            status = int(parts[1])
    except (OSError, asyncio.TimeoutError):
        status = 0
    finally:
        if writer is not None:
            writer.close()
    results.append((sent, time.monotonic() - sent, status))


async def main() -> None:
    port, rate, seconds, first, out = (
        int(sys.argv[1]),
        float(sys.argv[2]),
        float(sys.argv[3]),
        int(sys.argv[4]),
        sys.argv[5],
    )
    total = int(rate * seconds)
    start = time.monotonic()
    results: list = []
    tasks = []
    for i in range(total):
        at = start + i / rate
        delay = at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(
            asyncio.create_task(signin(port, first + i, time.monotonic(), results))
        )
    await asyncio.gather(*tasks)
    with open(out, "w") as f:
        for sent, took, status in results:
            f.write(f"{sent - start:.4f}\t{took:.6f}\t{status}\n")


if __name__ == "__main__":
    asyncio.run(main())
