"""Brands and products: the rules for who may list, change and delete them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import delete, exists, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from livecommerce.access import may_manage_brand, require
from livecommerce.auth import Principal
from livecommerce.errors import Conflict, NotFound
from livecommerce.models import Brand, FlashSale, Order, PlanRate, Product, Voucher, utcnow
from livecommerce.paging import cut_page

__all__ = [
    "create_brand",
    "create_product",
    "delete_product",
    "get_brand",
    "get_product",
    "list_brands",
    "list_products",
    "update_brand",
    "update_product",
]


async def get_brand(session: AsyncSession, brand_id: int) -> Brand:
    brand = await session.get(Brand, brand_id)
    if brand is None:
        raise NotFound(f"no brand with id {brand_id}")
    return brand


async def list_brands(session: AsyncSession, limit: int, after: int | None) -> tuple[list[Brand], int | None]:
    query = select(Brand).order_by(Brand.id).limit(limit + 1)
    if after is not None:
        query = query.where(Brand.id > after)
    rows = list((await session.scalars(query)).all())
    return cut_page(rows, limit)


async def _name_taken(session: AsyncSession, name: str, except_id: int | None = None) -> bool:
    query = select(func.count()).select_from(Brand).where(Brand.name_key == name.casefold())
    if except_id is not None:
        query = query.where(Brand.id != except_id)
    return bool(await session.scalar(query))


async def create_brand(session: AsyncSession, who: Principal, name: str, description: str) -> Brand:
    require(who, who.is_admin, "create brands", "admins")
    if await _name_taken(session, name):
        raise Conflict(f"a brand named {name!r} already exists; choose another name")
    brand = Brand(name=name, name_key=name.casefold(), description=description, created_at=utcnow())
    session.add(brand)
    await _flush(session, f"a brand named {name!r} already exists; choose another name")
    return brand


async def update_brand(session: AsyncSession, who: Principal, brand_id: int, changes: Mapping[str, Any]) -> Brand:
    brand = await get_brand(session, brand_id)
    require(who, may_manage_brand(who, brand_id), "edit this brand", "this brand's staff or an admin")
    name = changes.get("name")
    if name is not None and await _name_taken(session, name, except_id=brand_id):
        raise Conflict(f"a brand named {name!r} already exists; choose another name")
    for key, value in changes.items():
        if value is not None:
            setattr(brand, key, value)
    brand.name_key = brand.name.casefold()
    await _flush(session, "a brand with that name already exists; choose another name")
    return brand


async def get_product(session: AsyncSession, product_id: int) -> Product:
    product = await session.get(Product, product_id)
    if product is None:
        raise NotFound(f"no product with id {product_id}")
    return product


async def list_products(
    session: AsyncSession, limit: int, after: int | None, brand_id: int | None
) -> tuple[list[Product], int | None]:
    query = select(Product).order_by(Product.id).limit(limit + 1)
    if brand_id is not None:
        query = query.where(Product.brand_id == brand_id)
    if after is not None:
        query = query.where(Product.id > after)
    rows = list((await session.scalars(query)).all())
    return cut_page(rows, limit)


async def create_product(session: AsyncSession, who: Principal, brand_id: int, fields: Mapping[str, Any]) -> Product:
    await get_brand(session, brand_id)
    require(who, may_manage_brand(who, brand_id), "add products to this brand", "this brand's staff or an admin")
    await _check_sku_free(session, brand_id, fields["sku"])
    now = utcnow()
    product = Product(brand_id=brand_id, units_sold=0, created_at=now, updated_at=now, **fields)
    session.add(product)
    await _flush(session, f"this brand already has a product with SKU {fields['sku']!r}; SKUs are unique per brand")
    return product


async def update_product(session: AsyncSession, who: Principal, product_id: int, changes: Mapping[str, Any]) -> Product:
    product = await get_product(session, product_id)
    require(who, may_manage_brand(who, product.brand_id), "edit this product", "the product's brand staff or an admin")
    sku = changes.get("sku")
    if sku is not None and sku != product.sku:
        await _check_sku_free(session, product.brand_id, sku)
    for key, value in changes.items():
        if value is None and key != "image_url":
            continue  # null means "leave as is" except where null is a value (no image)
        setattr(product, key, value)
    product.updated_at = utcnow()
    await _flush(session, "this brand already has a product with that SKU; SKUs are unique per brand")
    return product


async def delete_product(session: AsyncSession, who: Principal, product_id: int) -> None:
    product = await get_product(session, product_id)
    require(
        who,
        may_manage_brand(who, product.brand_id),
        "delete this product",
        "the product's brand staff or an admin",
    )
    if product.units_sold:
        raise Conflict(
            f"this product has sold {product.units_sold} unit(s) and orders refer to it; "
            "set its stock to 0 to stop selling it instead"
        )
    referred = exists().where(FlashSale.product_id == product_id) | exists().where(Order.product_id == product_id)
    if await session.scalar(select(referred)):
        raise Conflict("flash sales or orders refer to this product; set its stock to 0 to stop selling it instead")
    if await session.scalar(select(exists().where(Voucher.product_id == product_id))):
        raise Conflict("vouchers refer to this product; end them and set its stock to 0 to stop selling it instead")
    # Its commission rates go with it: no order was sold under them (it never sold), so no history is lost.
    await session.execute(delete(PlanRate).where(PlanRate.product_id == product_id))
    await session.delete(product)
    await session.flush()


async def _check_sku_free(session: AsyncSession, brand_id: int, sku: str) -> None:
    query = select(func.count()).select_from(Product).where(Product.brand_id == brand_id, Product.sku == sku)
    if await session.scalar(query):
        raise Conflict(f"this brand already has a product with SKU {sku!r}; SKUs are unique per brand")


async def _flush(session: AsyncSession, conflict_detail: str) -> None:
    """Flush, turning a unique-constraint race lost to a concurrent request into a 409."""
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict(conflict_detail) from None
