"""Private servers for fault tests: each starts on its own port and folder, dies whole on
kill(), and comes back on the same folder and port with what it had made durable."""

import aio_pika
import asyncpg
import pytest
from redis import Redis

from services.core.private_servers import (
    PostgresServer,
    RabbitMQServer,
    RedisServer,
    ServerNotReady,
    group_members,
)


async def test_postgres_keeps_committed_rows_across_a_kill(private_postgres: PostgresServer) -> None:
    conn = await asyncpg.connect(private_postgres.url)
    await conn.execute("CREATE TABLE kept (id int PRIMARY KEY)")
    await conn.execute("INSERT INTO kept SELECT generate_series(1, 100)")
    old_pid, port = private_postgres.pid, private_postgres.port

    private_postgres.kill()
    assert group_members(old_pid) == []
    assert not private_postgres.ready()
    with pytest.raises((OSError, asyncpg.PostgresError)):
        await conn.fetchval("SELECT 1")

    private_postgres.start()
    private_postgres.wait_ready(timeout_s=60)
    assert (private_postgres.port, private_postgres.pid != old_pid) == (port, True)
    conn = await asyncpg.connect(private_postgres.url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM kept") == 100
    finally:
        await conn.close()
    # It was a crash, not a shutdown: PostgreSQL had to replay its WAL.
    assert "automatic recovery in progress" in private_postgres.log_path.read_text()


def test_postgres_stops_gracefully_and_starts_again(private_postgres: PostgresServer) -> None:
    private_postgres.stop()
    assert not private_postgres.alive()
    private_postgres.start()
    private_postgres.wait_ready(timeout_s=60)
    log = private_postgres.log_path.read_text()
    assert "database system is shut down" in log
    assert "automatic recovery in progress" not in log


def test_redis_without_persistence_comes_back_empty(private_redis: RedisServer) -> None:
    Redis.from_url(private_redis.url).set("board", "1")
    private_redis.kill()
    private_redis.start()
    private_redis.wait_ready(timeout_s=30)
    assert Redis.from_url(private_redis.url).get("board") is None


def test_redis_with_append_only_file_keeps_data_across_a_clean_stop() -> None:
    with RedisServer(persistence="aof") as server:
        Redis.from_url(server.url).set("board", "1")
        server.stop()
        server.start()
        server.wait_ready(timeout_s=30)
        assert Redis.from_url(server.url).get("board") == b"1"


def test_wait_ready_reports_a_server_that_cannot_start(private_redis: RedisServer) -> None:
    # A second server on the same port exits at once; the wait says so instead of timing out.
    clash = RedisServer(port=private_redis.port)
    clash.start()
    try:
        with pytest.raises(ServerNotReady, match="exited"):
            clash.wait_ready(timeout_s=30)
    finally:
        clash.remove()
    assert private_redis.ready()


async def test_rabbitmq_keeps_confirmed_messages_across_a_kill(private_rabbitmq: RabbitMQServer) -> None:
    connection = await aio_pika.connect(private_rabbitmq.url)
    channel = await connection.channel(publisher_confirms=True)
    await channel.declare_queue("kept", durable=True, arguments={"x-queue-type": "quorum"})
    await connection.close()
    # A clean restart writes the queue's registration to disk: RabbitMQ 3.10 loses a quorum
    # queue declared a moment before a crash (see the module's docstring), not the point here.
    private_rabbitmq.stop()
    private_rabbitmq.start()
    private_rabbitmq.wait_ready(timeout_s=90)

    connection = await aio_pika.connect(private_rabbitmq.url)
    channel = await connection.channel(publisher_confirms=True)
    await channel.default_exchange.publish(
        aio_pika.Message(b"submitted", delivery_mode=aio_pika.DeliveryMode.PERSISTENT), routing_key="kept"
    )
    old_pid = private_rabbitmq.pid

    private_rabbitmq.kill()
    await connection.close()
    assert group_members(old_pid) == []
    private_rabbitmq.start()
    private_rabbitmq.wait_ready(timeout_s=90)

    connection = await aio_pika.connect(private_rabbitmq.url)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue("kept", passive=True)
        message = None
        for _ in range(100):  # the quorum queue elects its leader again after the boot
            if message := await queue.get(fail=False, timeout=5):
                break
        assert message is not None and message.body == b"submitted"
    finally:
        await connection.close()
