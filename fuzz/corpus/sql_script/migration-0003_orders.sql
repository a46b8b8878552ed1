-- 0003_orders: orders and their items; inserting an item decrements the product's stock
-- (trigger), so selling more than is in stock fails on products_stock_nonnegative.
CREATE TABLE orders (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id bigint      NOT NULL REFERENCES customers (id),
    status      text        NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'paid', 'shipped', 'cancelled')),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE order_items (
    id               bigint  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id         bigint  NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    product_id       bigint  NOT NULL REFERENCES products (id),
    quantity         integer NOT NULL CHECK (quantity > 0),
    unit_price_cents integer NOT NULL CHECK (unit_price_cents > 0)
);

CREATE FUNCTION order_items_take_stock() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE products
       SET stock = stock - NEW.quantity
     WHERE id = NEW.product_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'product % does not exist', NEW.product_id;
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER order_items_take_stock
    BEFORE INSERT ON order_items
    FOR EACH ROW EXECUTE FUNCTION order_items_take_stock();

CREATE VIEW order_totals AS
SELECT o.id                                              AS order_id,
       o.customer_id,
       o.status,
       COALESCE(sum(i.quantity * i.unit_price_cents), 0)::bigint AS total_cents,
       count(i.id)                                       AS item_count
  FROM orders o
  LEFT JOIN order_items i ON i.order_id = o.id
 GROUP BY o.id, o.customer_id, o.status;
