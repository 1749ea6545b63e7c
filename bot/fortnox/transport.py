"""The Fortnox client's connections: several small httpx pools instead of one large one.

httpcore walks every pooled connection (a socket poll for each, and a quadratic idle count) whenever a
request starts or finishes (encode/httpcore#1035), so its CPU cost per request grows with the pool. At the
200 connections a bulk diagnosis keeps open, that bookkeeping cost more CPU than the requests themselves.
Here each request goes to the least busy of up to `max_connections / SHARD_SIZE` pools of SHARD_SIZE
connections; the total concurrency is the same, the walk per request is short.
"""
from __future__ import annotations

import math
from urllib.request import getproxies

import httpx

SHARD_SIZE = 4


def pooled_transport(max_connections: int) -> httpx.AsyncBaseTransport | None:
    """Small pools; or None (httpx's own single pool) when HTTP(S)_PROXY is set, as httpx honours
    proxies from the environment only for the transport it builds itself."""
    return None if getproxies() else ShardedTransport(max_connections)


class ShardedTransport(httpx.AsyncBaseTransport):
    def __init__(self, max_connections: int, shard_size: int = SHARD_SIZE):
        self._shard_size = shard_size
        self._max_shards = max(1, math.ceil(max_connections / shard_size))
        self._ssl = httpx.create_ssl_context()    # one CA bundle load, shared by every shard
        self._shards: list[httpx.AsyncHTTPTransport] = []
        self._busy: list[int] = []                 # requests in flight per shard, until their body is closed

    def _pick(self) -> int:
        """The least busy shard; a new one only when every shard is full (most runs need one or two)."""
        if self._shards:
            index = min(range(len(self._shards)), key=self._busy.__getitem__)
            if self._busy[index] < self._shard_size or len(self._shards) == self._max_shards:
                return index
        limits = httpx.Limits(max_connections=self._shard_size, max_keepalive_connections=self._shard_size)
        self._shards.append(httpx.AsyncHTTPTransport(verify=self._ssl, limits=limits))
        self._busy.append(0)
        return len(self._shards) - 1

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        index = self._pick()
        self._busy[index] += 1
        try:
            response = await self._shards[index].handle_async_request(request)
        except BaseException:
            self._busy[index] -= 1
            raise
        # the connection stays busy until the body is read and closed
        response.stream = _Release(response.stream, lambda: self._release(index))
        return response

    def _release(self, index: int) -> None:
        self._busy[index] -= 1

    async def aclose(self) -> None:
        for shard in self._shards:
            await shard.aclose()


class _Release(httpx.AsyncByteStream):
    """A response body that calls `release` once when closed."""

    def __init__(self, stream, release):
        self._stream, self._release = stream, release

    async def __aiter__(self):
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        release, self._release = self._release, None
        try:
            await self._stream.aclose()
        finally:
            if release is not None:
                release()
