#!/usr/bin/env python3
"""A TCP proxy on 127.0.0.1 that adds a fixed delay before each request reaches the server.

S3's first-byte latency is about 20 ms; the emulator answers in about 1 ms. Each chunk a client
sends (one HTTP request, on a keep-alive connection) is held for --delay-ms before it is
forwarded, so every request pays the latency once, as against S3; responses flow back
untouched. The listening port goes to --port-file.
"""
import argparse
import asyncio
import os


async def pipe(reader, writer, delay):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            if delay:
                await asyncio.sleep(delay)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        try:
            writer.close()
        except Exception:
            pass


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True, help="host:port of the server")
    parser.add_argument("--delay-ms", type=float, default=20.0)
    parser.add_argument("--port-file", required=True)
    args = parser.parse_args()
    host, port = args.target.rsplit(":", 1)
    delay = args.delay_ms / 1000.0

    async def handle(client_reader, client_writer):
        try:
            server_reader, server_writer = await asyncio.open_connection(host, int(port))
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(
            pipe(client_reader, server_writer, delay),
            pipe(server_reader, client_writer, 0),
        )

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(server.sockets[0].getsockname()[1]))
    os.replace(tmp, args.port_file)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
