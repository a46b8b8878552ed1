-- 0002_products: the catalogue; SKU format is checked and stock can never go negative.
CREATE TABLE products (
    id          bigint  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sku         text    NOT NULL UNIQUE
                CONSTRAINT products_sku_format CHECK (sku ~ '^[A-Z]{3}-[0-9]{4,8}$'),
    name        text    NOT NULL,
    price_cents integer NOT NULL CHECK (price_cents > 0),
    stock       integer NOT NULL CONSTRAINT products_stock_nonnegative CHECK (stock >= 0)
);
