-- testpool:no-transaction
-- 0005_indexes: lookup indexes built CONCURRENTLY, so this file runs outside a transaction,
-- one statement at a time.
CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_customer_id_idx
    ON orders (customer_id, created_at);

CREATE INDEX CONCURRENTLY IF NOT EXISTS order_items_product_id_idx
    ON order_items (product_id);
