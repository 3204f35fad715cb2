"""Everything the tests share, one concern per module; test modules import from here, never from each other.

Fixtures are defined once, here. `tests/conftest.py` registers the ones every folder uses (`pytest_plugins`);
a folder's own conftest.py imports only the fixtures of that folder (media, the browser).

- `ports`: free loopback ports.
- `waits`: `until` / `eventually`, polling a condition against a deadline (never a bare sleep).
- `redis_process`: redis-servers of the tests' own; fixtures `redis_server` (the session's), `redis_url`
  (flushed per test), `redis` (a client of it), `private_redis` (one a test may kill and start again).
- `databases`: SQLite and PostgreSQL; fixtures `database` (created once per backend per session), `engine`
  (emptied per test), `postgres_url` (a fresh PostgreSQL database); `reset`, `snapshot`.
- `postgres_cluster`: a throwaway PostgreSQL cluster a test may stop and start.
- `world`: `SECRET`, the signing `Api` client and `seed_world`, the populated system most tests start from.
- `application`: fixtures `settings` and `client` (the whole app on loopback).
- `sockets`: the Socket.IO `Viewer` of the whole app, `viewer_in`, and the fixture `pair` (two more app
  instances on the same Redis and database).
- `fanout_hub`: a bare python-socketio server running a `Fanout`, its clients (`Viewer`, `RawViewer`).
- `processes`: real `livecommerce` processes (`Launcher`, `Proc`, fixture `launcher`, `start_worker`, `http`).
- `shop`, `audit`: a small shop written to SQL directly, and an independent audit of a pool in Redis.
- `peers`, `media`: real aiortc peers, and the media folder's fixtures.
- `browser`: Chromium through Playwright, and the browser folder's fixtures.
"""
