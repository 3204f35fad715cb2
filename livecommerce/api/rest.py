"""The `/api/v1` REST routes: thin mappings from wire models to the domain modules.

Rules (who may do what, which states allow what) live in `catalog`, `rooms`, `users` and `commerce`; what
must follow a change beyond SQL (Redis stock, sale pools, live viewers, other processes) in `services`; this
module only translates. Each route's `access` text is published in the OpenAPI document and checked by the
authorisation-matrix test. The buying and reporting routes have modules (and routers) of their own; the list
of routers is `api.routes`.
"""

from __future__ import annotations

from collections.abc import Mapping

from livecommerce import catalog, rooms, users
from livecommerce.accounts import Account
from livecommerce.api import schemas as s
from livecommerce.api.routing import Call, Router
from livecommerce.auth import Principal
from livecommerce.commerce import order_queries, sales
from livecommerce.errors import NotFound
from livecommerce.models import Brand, Order, Product, Room, User
from livecommerce.services import SERVICES, Services

__all__ = ["ROUTER"]

ROUTER = Router(prefix="/api/v1")
route = ROUTER.route

_AUTH = (401,)
_WRITE = (400, 401, 403, 413, 415, 422)


def _user(user: User) -> s.UserOut:
    return s.UserOut.model_validate(user, from_attributes=True)


def _brand(brand: Brand) -> s.BrandOut:
    return s.BrandOut.model_validate(brand, from_attributes=True)


def _product(product: Product) -> s.ProductOut:
    return s.ProductOut.model_validate(product, from_attributes=True)


def _room(room: Room) -> s.RoomOut:
    return s.RoomOut(
        id=room.id,
        title=room.title,
        host=s.PersonOut(id=room.host.id, display_name=room.host.display_name),
        brands=[s.BrandRef(id=brand.id, name=brand.name) for brand in room.brands],
        visibility=room.visibility,
        status=room.status,
        scheduled_start=room.scheduled_start,
        started_at=room.started_at,
        ended_at=room.ended_at,
        created_at=room.created_at,
    )


def _services(call: Call) -> Services:
    return call.request.app[SERVICES]


def _sale(view: sales.SaleView) -> s.SaleOut:
    sale = view.sale
    return s.SaleOut(
        id=sale.id, brand_id=sale.brand_id, product_id=sale.product_id, price_minor=sale.price_minor,
        currency=sale.currency, quantity=sale.quantity, per_buyer_limit=sale.per_buyer_limit,
        starts_at=sale.starts_at, ends_at=sale.ends_at, hold_seconds=sale.hold_seconds, audience=sale.audience,
        status=sale.status, room_ids=view.room_ids, version=sale.version, units_paid=sale.units_paid,
        returned_units=sale.returned_units, created_at=sale.created_at, updated_at=sale.updated_at,
        finalised_at=sale.finalised_at, invite_count=view.invite_count, code_count=view.code_count,
    )  # fmt: skip


_TERMS = ("collaboration_id", "commission_bps", "fee_bps", "fee_base")


def _order(who: Principal, order: Order, buyers: Mapping[int, str]) -> s.OrderOut:
    """`buyers`: display names by user id (`order_queries.buyer_names`). The sale's terms only for those who
    may see them (`order_queries.may_see_terms`)."""
    fields = {name: getattr(order, name) for name in s.OrderOut.model_fields if name != "buyer_name"}
    if not order_queries.may_see_terms(who, order):
        fields.update(dict.fromkeys(_TERMS))
    return s.OrderOut(**fields, buyer_name=buyers.get(order.buyer_id, ""))


# --- auth and users -------------------------------------------------------------------------------------------


@route("POST", "/auth/demo-login", summary="Sign in as a demo user (demo mode only)", access="anyone, in demo mode",
       tag="auth", body=s.DemoLogin, response=s.TokenOut, errors=(400, 404, 413, 415, 422))  # fmt: skip
async def demo_login(call: Call, body: s.DemoLogin) -> s.TokenOut:
    if not call.settings.demo:
        raise NotFound("the demo login exists only when the server runs with --demo")
    user = await users.user_by_email(call.session, body.email)
    if user is None:
        raise NotFound(f"no demo user with email {body.email}; the server printed the demo users at start-up")
    refusal = Account.of(user).refusal()
    if refusal is not None:
        raise refusal
    token = call.token_for(user.id, user.role, user.brand_id)
    return s.TokenOut(token=token, expires_in=call.settings.token_ttl, user=_user(user))


@route("GET", "/me", summary="The signed-in user", access="signed-in users", tag="users", response=s.UserOut,
       errors=_AUTH)  # fmt: skip
async def get_me(call: Call) -> s.UserOut:
    return _user(await users.current_user(call.session, call.who))


@route("POST", "/users", summary="Create a user", access="admins", tag="users", body=s.UserCreate,
       response=s.UserOut, status=201, errors=(*_WRITE, 409))  # fmt: skip
async def create_user(call: Call, body: s.UserCreate) -> s.UserOut:
    user = await users.create_user(
        call.session, call.who, email=body.email, display_name=body.display_name, role=body.role,
        brand_id=body.brand_id,
    )  # fmt: skip
    return _user(user)


@route("POST", "/users/{user_id}/token", summary="Issue a bearer token for a user", access="admins",
       tag="users", response=s.TokenOut, status=201, errors=(401, 403, 404, 409))  # fmt: skip
async def issue_token(call: Call, user_id: int) -> s.TokenOut:
    user = await users.user_for_token(call.session, call.who, user_id)
    token = call.token_for(user.id, user.role, user.brand_id)
    return s.TokenOut(token=token, expires_in=call.settings.token_ttl, user=_user(user))


_ACCOUNT_ERRORS = (401, 403, 404, 409)


@route("PUT", "/users/{user_id}/role", summary="Change a user's role (and brand, for brand staff)",
       access="admins (not for their own account, nor the last active admin)", tag="users", body=s.RoleChange,
       response=s.UserOut, errors=(*_WRITE, 404, 409))  # fmt: skip
async def change_user_role(call: Call, user_id: int, body: s.RoleChange) -> s.UserOut:
    user = await _services(call).change_role(call, call.who, user_id, role=body.role, brand_id=body.brand_id)
    return _user(user)


@route("POST", "/users/{user_id}/suspend", summary="Suspend a user: their tokens are refused until reinstated",
       access="admins (not for their own account, nor the last active admin)", tag="users", response=s.UserOut,
       errors=_ACCOUNT_ERRORS)  # fmt: skip
async def suspend_user(call: Call, user_id: int) -> s.UserOut:
    return _user(await _services(call).suspend_user(call, call.who, user_id))


@route("POST", "/users/{user_id}/reinstate", summary="Lift a user's suspension", access="admins", tag="users",
       response=s.UserOut, errors=_ACCOUNT_ERRORS)  # fmt: skip
async def reinstate_user(call: Call, user_id: int) -> s.UserOut:
    return _user(await _services(call).reinstate_user(call, call.who, user_id))


@route("DELETE", "/users/{user_id}", summary="Delete a user: anonymised for good, their orders kept",
       access="admins (not for their own account, nor the last active admin)", tag="users", status=204,
       errors=_ACCOUNT_ERRORS)  # fmt: skip
async def delete_user(call: Call, user_id: int) -> None:
    await _services(call).delete_user(call, call.who, user_id)


# --- brands ---------------------------------------------------------------------------------------------------


@route("GET", "/brands", summary="List brands", access="anyone", tag="brands", query=s.PageQuery,
       response=s.BrandPage, errors=(422,))  # fmt: skip
async def list_brands(call: Call, query: s.PageQuery) -> s.BrandPage:
    rows, cursor = await catalog.list_brands(call.session, query.limit, query.after)
    return s.BrandPage(items=[_brand(b) for b in rows], next=cursor)


@route("POST", "/brands", summary="Create a brand", access="admins", tag="brands", body=s.BrandCreate,
       response=s.BrandOut, status=201, errors=(*_WRITE, 409))  # fmt: skip
async def create_brand(call: Call, body: s.BrandCreate) -> s.BrandOut:
    return _brand(await catalog.create_brand(call.session, call.who, body.name, body.description))


@route("GET", "/brands/{brand_id}", summary="Get a brand", access="anyone", tag="brands", response=s.BrandOut,
       errors=(404,))  # fmt: skip
async def get_brand(call: Call, brand_id: int) -> s.BrandOut:
    return _brand(await catalog.get_brand(call.session, brand_id))


@route("PATCH", "/brands/{brand_id}", summary="Edit a brand", access="the brand's staff, admins",
       tag="brands", body=s.BrandUpdate, response=s.BrandOut, errors=(*_WRITE, 404, 409))  # fmt: skip
async def update_brand(call: Call, brand_id: int, body: s.BrandUpdate) -> s.BrandOut:
    changes = body.model_dump(exclude_unset=True)
    return _brand(await catalog.update_brand(call.session, call.who, brand_id, changes))


# --- products -------------------------------------------------------------------------------------------------


@route("GET", "/products", summary="List products", access="anyone", tag="products", query=s.ProductQuery,
       response=s.ProductPage, errors=(422,))  # fmt: skip
async def list_products(call: Call, query: s.ProductQuery) -> s.ProductPage:
    rows, cursor = await catalog.list_products(call.session, query.limit, query.after, query.brand_id)
    return s.ProductPage(items=[_product(p) for p in rows], next=cursor)


@route("POST", "/brands/{brand_id}/products", summary="Add a product to a brand",
       access="the brand's staff, admins", tag="products", body=s.ProductCreate, response=s.ProductOut,
       status=201, errors=(*_WRITE, 404, 409))  # fmt: skip
async def create_product(call: Call, brand_id: int, body: s.ProductCreate) -> s.ProductOut:
    product = await catalog.create_product(call.session, call.who, brand_id, body.model_dump())
    return _product(product)


@route("GET", "/products/{product_id}", summary="Get a product", access="anyone", tag="products",
       response=s.ProductOut, errors=(404,))  # fmt: skip
async def get_product(call: Call, product_id: int) -> s.ProductOut:
    return _product(await catalog.get_product(call.session, product_id))


@route("PATCH", "/products/{product_id}", summary="Edit a product (price, stock, ...)",
       access="the product's brand staff, admins", tag="products", body=s.ProductUpdate,
       response=s.ProductOut, errors=(*_WRITE, 404, 409))  # fmt: skip
async def update_product(call: Call, product_id: int, body: s.ProductUpdate) -> s.ProductOut:
    changes = body.model_dump(exclude_unset=True)
    return _product(await _services(call).update_product(call, call.who, product_id, changes))


@route("DELETE", "/products/{product_id}", summary="Delete a product that has never sold",
       access="the product's brand staff, admins", tag="products", status=204,
       errors=(401, 403, 404, 409))  # fmt: skip
async def delete_product(call: Call, product_id: int) -> None:
    await catalog.delete_product(call.session, call.who, product_id)


# --- rooms ----------------------------------------------------------------------------------------------------


@route("GET", "/rooms", summary="List rooms you can see", access="anyone (private rooms: their host, "
       "featured brands' staff, admins)", tag="rooms", query=s.RoomQuery, response=s.RoomPage,
       errors=(422,))  # fmt: skip
async def list_rooms(call: Call, query: s.RoomQuery) -> s.RoomPage:
    rows, cursor = await rooms.list_rooms(call.session, call.who, query.limit, query.after, query.status, query.host_id)
    return s.RoomPage(items=[_room(r) for r in rows], next=cursor)


@route("POST", "/rooms", summary="Create and schedule a room", access="hosts, admins", tag="rooms",
       body=s.RoomCreate, response=s.RoomOut, status=201, errors=_WRITE)  # fmt: skip
async def create_room(call: Call, body: s.RoomCreate) -> s.RoomOut:
    room = await rooms.create_room(
        call.session, call.who, title=body.title, scheduled_start=body.scheduled_start,
        brand_ids=body.brand_ids, visibility=body.visibility, host_id=body.host_id,
    )  # fmt: skip
    return _room(room)


@route("GET", "/rooms/{room_id}", summary="A room's snapshot", access="anyone (private rooms: their host, "
       "featured brands' staff, admins)", tag="rooms", response=s.RoomOut, errors=(404,))  # fmt: skip
async def get_room(call: Call, room_id: int) -> s.RoomOut:
    return _room(await rooms.get_room(call.session, call.who, room_id))


@route("PATCH", "/rooms/{room_id}", summary="Edit or reschedule a room", access="the room's host, admins",
       tag="rooms", body=s.RoomUpdate, response=s.RoomOut, errors=(*_WRITE, 404, 409))  # fmt: skip
async def update_room(call: Call, room_id: int, body: s.RoomUpdate) -> s.RoomOut:
    room = await rooms.update_room(
        call.session, call.who, room_id, title=body.title, scheduled_start=body.scheduled_start,
        brand_ids=body.brand_ids, visibility=body.visibility,
    )  # fmt: skip
    return _room(room)


@route("POST", "/rooms/{room_id}/live", summary="Go live", access="the room's host, admins", tag="rooms",
       response=s.RoomOut, errors=(401, 403, 404, 409))  # fmt: skip
async def go_live(call: Call, room_id: int) -> s.RoomOut:
    return _room(await _services(call).go_live(call, call.who, room_id))


@route("POST", "/rooms/{room_id}/end", summary="End a live room, or cancel a scheduled one",
       access="the room's host, admins", tag="rooms", response=s.RoomOut,
       errors=(401, 403, 404, 409))  # fmt: skip
async def end_room(call: Call, room_id: int) -> s.RoomOut:
    return _room(await _services(call).end_room(call, call.who, room_id))


# --- flash sales ----------------------------------------------------------------------------------------------

_SALE_READERS = "anyone who can see one of its rooms (drafts and cancelled sales: the brand's staff, admins)"
_SALE_MANAGERS = "the sale's brand staff, admins"


@route("GET", "/sales", summary="List flash sales you can see", access=f"anyone; each sale: {_SALE_READERS}",
       tag="sales", query=s.SaleQuery, response=s.SalePage, errors=(422,))  # fmt: skip
async def list_sales(call: Call, query: s.SaleQuery) -> s.SalePage:
    views, cursor = await sales.list_sales(
        call.session, call.who, query.limit, query.after, status=query.status, room_id=query.room_id,
        brand_id=query.brand_id,
    )  # fmt: skip
    return s.SalePage(items=[_sale(v) for v in views], next=cursor)


@route("POST", "/sales", summary="Plan a flash sale (a draft)", access="the product's brand staff, admins",
       tag="sales", body=s.SaleCreate, response=s.SaleOut, status=201, errors=_WRITE)  # fmt: skip
async def create_sale(call: Call, body: s.SaleCreate) -> s.SaleOut:
    return _sale(await sales.create_sale(call.session, call.who, **body.model_dump()))


@route("GET", "/sales/{sale_id}", summary="Get a flash sale", access=_SALE_READERS, tag="sales",
       response=s.SaleOut, errors=(404,))  # fmt: skip
async def get_sale(call: Call, sale_id: int) -> s.SaleOut:
    return _sale(await sales.get_sale(call.session, call.who, sale_id))


@route("PATCH", "/sales/{sale_id}", summary="Edit a draft flash sale", access=_SALE_MANAGERS, tag="sales",
       body=s.SaleUpdate, response=s.SaleOut, errors=(*_WRITE, 404, 409))  # fmt: skip
async def update_sale(call: Call, sale_id: int, body: s.SaleUpdate) -> s.SaleOut:
    changes = body.model_dump(exclude_unset=True)
    return _sale(await sales.update_sale(call.session, call.who, sale_id, changes))


@route("POST", "/sales/{sale_id}/schedule", summary="Schedule a draft sale, taking its quantity from stock",
       access=_SALE_MANAGERS, tag="sales", response=s.SaleOut, errors=(401, 403, 404, 409),
       notes="409 `conflict` when the stock is short, a room has ended or no longer features the brand, or "
             "another scheduled or live sale of the product shows in one of the same rooms in an overlapping "
             "window (a room sells a product from one sale at a time; the detail names that sale and its "
             "window).")  # fmt: skip
async def schedule_sale(call: Call, sale_id: int) -> s.SaleOut:
    return _sale(await _services(call).schedule_sale(call, call.who, sale_id))


@route("POST", "/sales/{sale_id}/cancel", summary="Cancel a draft, or a scheduled sale before it starts",
       access=_SALE_MANAGERS, tag="sales", response=s.SaleOut, errors=(401, 403, 404, 409))  # fmt: skip
async def cancel_sale(call: Call, sale_id: int) -> s.SaleOut:
    return _sale(await _services(call).cancel_sale(call, call.who, sale_id))


@route("POST", "/sales/{sale_id}/end", summary="End a started sale now; unsold units return to stock",
       access=_SALE_MANAGERS, tag="sales", response=s.SaleOut, errors=(401, 403, 404, 409),
       notes="Answers the sale as it now is: `ended`, `ends_at` now; `finalised_at` is set once the worker has "
             "returned the unsold units. A buy that names it (`sale_id` or one of its codes) is then refused "
             "with `sale_not_running`.")  # fmt: skip
async def end_sale(call: Call, sale_id: int) -> s.SaleOut:
    return _sale(await _services(call).end_sale(call, call.who, sale_id))


@route("POST", "/sales/{sale_id}/countdown", summary="Start a scheduled sale after a countdown in a room",
       access="the room's host, the sale's brand staff, admins", tag="sales", body=s.CountdownStart,
       response=s.CountdownOut, errors=(*_WRITE, 404, 409),
       notes="409 `conflict` when the sale has started or ended, the room has ended, or the new start would put "
             "the sale's window over another scheduled or live sale of the product in a shared room (named)."
       )  # fmt: skip
async def start_countdown(call: Call, sale_id: int, body: s.CountdownStart) -> s.CountdownOut:
    started = await _services(call).countdown(call, call.who, sale_id, body.room_id, body.seconds)
    return s.CountdownOut(
        sale_id=sale_id, room_id=started.room_id, starts_at=started.starts_at, version=started.sale.version
    )


@route("GET", "/sales/{sale_id}/invites", summary="A sale's invite list", access=_SALE_MANAGERS, tag="sales",
       query=s.PageQuery, response=s.InviteePage, errors=(401, 403, 404))  # fmt: skip
async def list_sale_invites(call: Call, sale_id: int, query: s.PageQuery) -> s.InviteePage:
    people, cursor = await sales.list_invites(call.session, call.who, sale_id, query.limit, query.after)
    return s.InviteePage(items=[s.PersonOut(id=p.id, display_name=p.display_name) for p in people], next=cursor)


@route("GET", "/sales/{sale_id}/codes", summary="A sale's invite codes and who redeemed them",
       access=_SALE_MANAGERS, tag="sales", query=s.PageQuery, response=s.CodePage,
       errors=(401, 403, 404))  # fmt: skip
async def list_sale_codes(call: Call, sale_id: int, query: s.PageQuery) -> s.CodePage:
    codes, cursor = await sales.list_codes(call.session, call.who, sale_id, query.limit, query.after)
    items = [s.CodeOut(code=c.code, created_at=c.created_at, redeemed_hold=c.redeemed_hold,
                       redeemed_by=c.redeemed_by) for c in codes]  # fmt: skip
    return s.CodePage(items=items, next=cursor)


# --- orders ---------------------------------------------------------------------------------------------------


@route("GET", "/orders", summary="Your orders, newest first", access="signed-in users", tag="orders",
       query=s.OrderQuery, response=s.OrderPage, errors=(401,))  # fmt: skip
async def list_my_orders(call: Call, query: s.OrderQuery) -> s.OrderPage:
    rows, cursor = await order_queries.list_my_orders(call.session, call.who, query.limit, query.after, query.status)
    buyers = await order_queries.buyer_names(call.session, rows)
    return s.OrderPage(items=[_order(call.who, o, buyers) for o in rows], next=cursor)


@route("GET", "/orders/{order_id}", summary="Get an order", access="its buyer, its brand's staff, admins",
       tag="orders", response=s.OrderOut, errors=(401, 404))  # fmt: skip
async def get_order(call: Call, order_id: int) -> s.OrderOut:
    order = await order_queries.get_order(call.session, call.who, order_id)
    return _order(call.who, order, await order_queries.buyer_names(call.session, [order]))


@route("GET", "/brands/{brand_id}/orders", summary="A brand's orders, newest first",
       access="the brand's staff, admins", tag="orders", query=s.BrandOrderQuery, response=s.OrderPage,
       errors=(401, 403, 404))  # fmt: skip
async def list_brand_orders(call: Call, brand_id: int, query: s.BrandOrderQuery) -> s.OrderPage:
    rows, cursor = await order_queries.list_brand_orders(
        call.session, call.who, brand_id, query.limit, query.after, status=query.status, sale_id=query.sale_id
    )
    buyers = await order_queries.buyer_names(call.session, rows)
    return s.OrderPage(items=[_order(call.who, o, buyers) for o in rows], next=cursor)
