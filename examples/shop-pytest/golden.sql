-- Golden data every purchase test starts from: twenty products with ONE unit left each, one with
-- plenty, and the customers who buy them.
INSERT INTO products (sku, name, price_cents, stock)
SELECT 'LAST-' || lpad(g::text, 2, '0'), 'Last unit #' || g, 1000 + g, 1 FROM generate_series(1, 20) g;
INSERT INTO products (sku, name, price_cents, stock) VALUES ('PLENTY', 'Plenty in stock', 500, 1000);
INSERT INTO customers (email)
SELECT 'customer' || g || '@example.test' FROM generate_series(1, 20) g;
