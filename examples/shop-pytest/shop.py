"""The code under test: buying, cancelling, stock. Written as an application writes it."""
from __future__ import annotations


class OutOfStock(Exception):
    pass


class AlreadyOrdered(Exception):
    pass


def customer_id(conn, email: str) -> int:
    row = conn.execute("SELECT id FROM customers WHERE email = %s", (email,)).fetchone()
    if row is None:
        raise LookupError(email)
    return row[0]


def buy(conn, email: str, sku: str) -> int:
    """One unit of `sku` for the customer: the stock goes down, an order is recorded; returns its id."""
    import psycopg

    with conn.transaction():
        stock = conn.execute("SELECT stock FROM products WHERE sku = %s FOR UPDATE", (sku,)).fetchone()
        if stock is None:
            raise LookupError(sku)
        if stock[0] < 1:
            raise OutOfStock(sku)
        conn.execute("UPDATE products SET stock = stock - 1 WHERE sku = %s", (sku,))
        try:
            return conn.execute("INSERT INTO orders (customer_id, sku) VALUES (%s, %s) RETURNING id",
                                (customer_id(conn, email), sku)).fetchone()[0]
        except psycopg.errors.UniqueViolation:
            raise AlreadyOrdered(f"{email} already has an open order of {sku}") from None


def cancel(conn, order_id: int) -> None:
    """The order is cancelled and its unit goes back on the shelf."""
    with conn.transaction():
        sku = conn.execute("UPDATE orders SET status = 'cancelled' WHERE id = %s AND status = 'paid' RETURNING sku",
                           (order_id,)).fetchone()
        if sku is None:
            raise LookupError(order_id)
        conn.execute("UPDATE products SET stock = stock + 1 WHERE sku = %s", (sku[0],))


def stock(conn, sku: str) -> int:
    return conn.execute("SELECT stock FROM products WHERE sku = %s", (sku,)).fetchone()[0]


def open_orders(conn, email: str) -> int:
    return conn.execute("SELECT count(*) FROM orders o JOIN customers c ON c.id = o.customer_id "
                        "WHERE c.email = %s AND o.status = 'paid'", (email,)).fetchone()[0]
