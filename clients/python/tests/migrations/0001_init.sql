-- The schema the plugin's own tests lease: a table the tests write, builder targets and a
-- table of users for record-pool claims.
CREATE TABLE notes (id bigserial PRIMARY KEY, worker text NOT NULL, body text NOT NULL);
CREATE TABLE customers (id bigserial PRIMARY KEY, email text NOT NULL UNIQUE, full_name text NOT NULL,
                        country text NOT NULL);
CREATE TABLE orders (id bigserial PRIMARY KEY, customer_id bigint NOT NULL REFERENCES customers (id),
                     status text NOT NULL);
CREATE TABLE users (id integer PRIMARY KEY, tier text NOT NULL);
INSERT INTO users SELECT g, CASE WHEN g % 2 = 0 THEN 'premium' ELSE 'basic' END FROM generate_series(1, 20) g;
