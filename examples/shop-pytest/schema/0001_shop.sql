-- The shop the purchase suite tests: a catalogue with stock, customers, orders.
CREATE TABLE products (
    sku   text PRIMARY KEY,
    name  text NOT NULL,
    price_cents integer NOT NULL CHECK (price_cents > 0),
    stock integer NOT NULL CHECK (stock >= 0)
);
CREATE TABLE customers (
    id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email text NOT NULL UNIQUE
);
CREATE TABLE orders (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES customers (id),
    sku         text   NOT NULL REFERENCES products (sku),
    status      text   NOT NULL DEFAULT 'paid' CHECK (status IN ('paid', 'cancelled'))
);
-- One open order per customer and product: a second click on "buy" must not charge twice.
CREATE UNIQUE INDEX orders_one_open_per_customer ON orders (customer_id, sku) WHERE status = 'paid';
