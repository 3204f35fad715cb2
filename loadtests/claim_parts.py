"""The voucher-claim benchmark's pieces: seeding a platform voucher, the Redis audit, the `voucher_claim` ceiling.

Used by `run_claim_bench.py`, next to the flash-sale burst's modules (`buy_seed.py`, `buy_peers.py`):

* `new_voucher`: a campaign and a platform-funded amount-off voucher under it, created through the domain layer
  (`commerce.vouchers.create_campaign` / `create_campaign_voucher`, as an admin), not loaded into Redis: the
  host's real `pin {room_id, voucher_id}` loads it (`VoucherLive.ensure_loaded`), as production does.
* `audit_voucher`: reads the voucher's cfg, budget, buyers and claims from Redis after a burst and checks claimed
  <= quota, nobody above the per-buyer limit, reserved + spent + free = funded (all >= 0), reserved = claims x
  the worst cost, and the acknowledged claims against them. `BudgetWatch` checks the budget's sum while the
  burst runs (20 reads a second from a thread).
* `run_claim_ceiling`: `voucher_claim` FCALLs written straight on sockets with a hiredis parser
  (`buy_peers._RawRedis`), in the shapes `buy_peers.run_ceiling` uses for `pool_reserve`, each on a freshly loaded
  voucher: what Redis completes per second for this workload, and its CPU per claim.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from buy_peers import CeilingResult, _cpu, _RawRedis, _resp
from buy_seed import World
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from livecommerce.auth import Principal
from livecommerce.commerce import vouchers
from livecommerce.commerce.voucher_store import VoucherConfig, VoucherStore, voucher_keys
from livecommerce.database import open_database, session_factory
from livecommerce.models import Funding, Role, VoucherKind

__all__ = ["BudgetWatch", "VoucherAudit", "VoucherPlan", "audit_voucher", "new_voucher", "run_claim_ceiling"]

AMOUNT_OFF = 500  # minor units: the voucher's amount off, hence the worst cost one claim reserves


@dataclass(frozen=True)
class VoucherPlan:
    """The voucher a claim part seeds. `budget_claims`: how many claims its budget covers (the rest are refused
    `budget_out`); `quota` the claims it allows in all."""

    label: str
    quota: int
    limit: int
    budget_claims: int

    @property
    def funded(self) -> int:
        return self.budget_claims * AMOUNT_OFF


async def new_voucher(database_url: str, world: World, plan: VoucherPlan) -> int:
    """A campaign and a platform voucher (amount off, any brand) under it; returns the voucher's id."""
    engine = await open_database(database_url)
    try:
        sessions = session_factory(engine)
        admin = Principal(world.admin_id, Role.ADMIN)
        now = datetime.now(UTC)
        starts, ends = now - timedelta(minutes=1), now + timedelta(hours=2)
        async with sessions.begin() as session:
            view = await vouchers.create_campaign(
                session, admin, name=f"Bench {plan.label}", currency="USD", budget_minor=plan.funded,
                starts_at=starts, ends_at=ends,
            )  # fmt: skip
            draft = vouchers.VoucherDraft(
                title=f"Bench {plan.label}", kind=VoucherKind.AMOUNT, starts_at=starts, ends_at=ends,
                quota=plan.quota, amount_minor=AMOUNT_OFF, per_buyer_limit=plan.limit,
            )  # fmt: skip
            voucher = await vouchers.create_campaign_voucher(
                session, admin, view.campaign.id, draft, funding=Funding.PLATFORM, budget_minor=plan.funded
            )
            return int(voucher.id)
    finally:
        await engine.dispose()


# --- the audit ------------------------------------------------------------------------------------------------


@dataclass
class VoucherAudit:
    quota: int = 0
    limit: int = 0
    claimed: int = 0  # cfg.claimed
    claim_records: int = 0  # entries in the claims hash
    idem: int = 0
    funded: int = 0
    reserved: int = 0
    spent: int = 0
    free: int = 0
    worst: int = 0
    max_per_buyer: int = 0
    buyers: int = 0
    outbox: int = 0
    watch_reads: int = 0  # budget reads during the burst
    unacknowledged: int = 0  # claims made whose ack said `unavailable` (a retry with the key returns them)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def line(self) -> str:
        verdict = "**conservation held**" if self.ok else "**VIOLATED: " + "; ".join(self.problems) + "**"
        unacked = f"; {self.unacknowledged} claims made whose ack said `unavailable`" if self.unacknowledged else ""
        return (
            f"claimed {self.claimed:,} of quota {self.quota:,} ({self.claim_records:,} claim records, {self.idem:,} "
            f"keys) over {self.buyers:,} buyers, at most {self.max_per_buyer} per buyer (limit {self.limit}); budget "
            f"reserved {self.reserved:,} + spent {self.spent:,} + free {self.free:,} = "
            f"{self.reserved + self.spent + self.free:,} of funded {self.funded:,} (worst cost {self.worst} per "
            f"claim), and so at each of {self.watch_reads:,} reads during the burst; {self.outbox:,} outbox entries"
            f"{unacked} — {verdict}"
        )


def _budget_problem(b: dict[str, int]) -> str | None:
    parts = [b.get(k, 0) for k in ("reserved", "spent", "free")]
    if any(v < 0 for v in parts):
        return f"a negative budget part: {b}"
    if sum(parts) != b.get("funded", 0):
        return f"reserved + spent + free != funded: {b}"
    return None


def _ints(raw: dict[bytes, bytes]) -> dict[str, int]:
    out = {}
    for k, v in raw.items():
        try:
            out[k.decode()] = int(v)
        except ValueError:
            continue
    return out


class BudgetWatch:
    """Reads the voucher's budget hash every `interval` seconds from a thread while the burst runs (a context
    manager) and keeps the first violation of reserved + spent + free = funded."""

    def __init__(self, redis_url: str, voucher_id: int, interval: float = 0.05) -> None:
        self.client = SyncRedis.from_url(redis_url)
        self.key = voucher_keys(voucher_id).budget
        self.interval = interval
        self.reads = 0
        self.problem: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="budget-watch", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            budget = _ints(self.client.hgetall(self.key))  # one HGETALL: one consistent read
            self.reads += 1
            self.problem = self.problem or _budget_problem(budget)

    def __enter__(self) -> BudgetWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.client.close()


async def audit_voucher(
    redis_url: str,
    voucher_id: int,
    acked_by_buyer: dict[int, int],
    acked_ids: int,
    unavailable: int,
    watch: BudgetWatch | None,
) -> VoucherAudit:
    """What must hold after a burst of claims, from Redis, and the acknowledged claims against it."""
    keys = voucher_keys(voucher_id)
    redis = Redis.from_url(redis_url)
    try:
        cfg = _ints(await redis.hgetall(keys.cfg))
        budget = _ints(await redis.hgetall(keys.budget))
        buyers = {int(k): int(v) for k, v in (await redis.hgetall(keys.buyers)).items()}
        claims = await redis.hvals(keys.claims)
        idem = int(await redis.hlen(keys.idem))
        outbox = int(await redis.xlen(keys.outbox))
    finally:
        await redis.aclose()
    audit = VoucherAudit(
        quota=cfg.get("quota", 0), limit=cfg.get("limit", 0), claimed=cfg.get("claimed", 0),
        claim_records=len(claims), idem=idem, funded=budget.get("funded", 0), reserved=budget.get("reserved", 0),
        spent=budget.get("spent", 0), free=budget.get("free", 0), worst=cfg.get("worst", 0),
        max_per_buyer=max(buyers.values(), default=0), buyers=len(buyers), outbox=outbox,
        watch_reads=watch.reads if watch else 0,
    )  # fmt: skip
    per_buyer: Counter[int] = Counter()
    states: Counter[str] = Counter()
    for raw in claims:
        claim: dict[str, Any] = orjson.loads(raw)
        per_buyer[int(claim["buyer"])] += 1
        states[str(claim["state"])] += 1
    p = audit.problems
    if audit.claimed > audit.quota:
        p.append(f"OVER QUOTA: {audit.claimed} claims of {audit.quota}")
    if audit.claim_records != audit.claimed:
        p.append(f"{audit.claim_records} claim records but claimed = {audit.claimed}")
    if audit.idem != audit.claimed:
        p.append(f"{audit.idem} idempotency keys but claimed = {audit.claimed}")
    if audit.max_per_buyer > audit.limit or max(per_buyer.values(), default=0) > audit.limit:
        p.append(f"a buyer above the limit of {audit.limit}")
    if dict(per_buyer) != buyers:
        p.append("the buyers counters differ from the claim records")
    problem = _budget_problem(budget)
    if problem:
        p.append(problem)
    if watch is not None and watch.problem:
        p.append(f"during the burst: {watch.problem}")
    if states.get("claimed", 0) * audit.worst != audit.reserved:
        p.append(f"reserved {audit.reserved} != {states.get('claimed', 0)} claims x worst cost {audit.worst}")
    # A claim answered `unavailable` (the hub's Redis call failed after Redis had run it) may stand in Redis: the
    # buyer's retry with the same key gets it back. Anything else must match the acknowledgements exactly.
    over = sum(1 for b, n in acked_by_buyer.items() if n > buyers.get(b, 0))
    if over:
        p.append(f"{over} buyers were acknowledged more claims than Redis holds")
    audit.unacknowledged = audit.claimed - acked_ids
    if not 0 <= audit.unacknowledged <= unavailable:
        p.append(f"{acked_ids} distinct claims acknowledged but claimed = {audit.claimed} ({unavailable} unavailable)")
    return audit


# --- the Redis ceiling of voucher_claim ---------------------------------------------------------------------------


async def _fresh_voucher(url: str, voucher_id: int, plan: VoucherPlan) -> None:
    redis = Redis.from_url(url)
    try:
        store = VoucherStore(redis)
        await store.load_library()
        now = int(time.time() * 1000)
        config = VoucherConfig(
            version=1, quota=plan.quota, per_buyer_limit=plan.limit, starts_at_ms=now - 60_000,
            ends_at_ms=now + 3_600_000, worst_cost_minor=AMOUNT_OFF, funded_minor=plan.funded,
        )  # fmt: skip
        result = await store.load(voucher_id, config)
        assert result.status == "loaded", result
        assert result.created, "the voucher existed already"
    finally:
        await redis.aclose()


async def _drive_claims(
    url: str, voucher_id: int, plan: Sequence[int], rounds: int, batch: int, depth: int, connections: int
) -> tuple[int, int, Counter[str]]:
    """Every (round, attempt) as `voucher_claim` calls of `batch` claims; returns (attempts, claims, refusals)."""
    host, port = url.split("//", 1)[1].split("/", 1)[0].split(":")
    loop = asyncio.get_running_loop()
    conns = [(await loop.create_connection(_RawRedis, host, int(port)))[1] for _ in range(connections)]
    keys = voucher_keys(voucher_id)
    head = [b"FCALL", b"voucher_claim", b"%d" % len(keys), *(k.encode() for k in keys)]
    taps = [(r, n) for r in range(rounds) for n in range(len(plan))]
    chunks = [taps[i : i + batch] for i in range(0, len(taps), batch)]
    cursor = iter(chunks)
    counts: Counter[str] = Counter()
    users = max(plan) + 1

    async def lane(conn: _RawRedis) -> None:
        async def one(chunk: list[tuple[int, int]]) -> None:
            args = [*head, b"%d" % len(chunk)]
            for r, n in chunk:  # each round is a new crowd of buyers (ids offset by `users`)
                args += [b"%d" % (r * users + plan[n] + 1), b"c%d-%d" % (r, n)]
            reply = await conn.call(_resp(args))
            if isinstance(reply, Exception):
                raise reply
            for item in reply[:-1]:
                counts[item[0].decode()] += 1

        async def stream() -> None:
            for chunk in cursor:
                await one(chunk)

        await asyncio.gather(*(stream() for _ in range(depth)))

    try:
        await asyncio.gather(*(lane(c) for c in conns))
    finally:
        for conn in conns:
            if conn.transport is not None:
                conn.transport.close()
    claims = counts.pop("ok", 0)
    return len(taps), claims, counts


async def run_claim_ceiling(
    url: str, redis_pid: int, plan: Sequence[int], vouchers_: Sequence[VoucherPlan], rounds: int = 1
) -> list[CeilingResult]:
    """`voucher_claim` straight from a minimal client, in the shapes of the `pool_reserve` ceiling, for each
    voucher plan (open; budget running out), each on a freshly loaded voucher."""
    shapes = [(1, 32, 4), (16, 4, 4), (64, 2, 4)]  # (claims per call, calls in flight per connection, connections)
    results = []
    n = 0
    for vp in vouchers_:
        for batch, depth, connections in shapes:
            n += 1
            voucher_id = 900_000 + n
            await _fresh_voucher(url, voucher_id, vp)
            redis_before, me_before = _cpu([redis_pid]), time.process_time()
            started = time.perf_counter()
            attempts, claims, refusals = await _drive_claims(url, voucher_id, plan, rounds, batch, depth, connections)
            wall = time.perf_counter() - started
            results.append(CeilingResult(
                "claim-ceiling", f"raw FCALL `voucher_claim`, {vp.label}: {batch} claim{'s' if batch > 1 else ''} "
                f"per call, {depth} in flight x {connections} connections", attempts=attempts, wall_s=wall,
                redis_cpu_s=_cpu([redis_pid]) - redis_before, client_cpu_s=time.process_time() - me_before,
                holds=claims, refusals=dict(refusals), calls=math.ceil(attempts / batch),
            ))  # fmt: skip
    return results
