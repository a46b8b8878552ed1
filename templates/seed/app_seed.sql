-- app_seed: demo catalogue and customers, applied once after the migrations.
-- LST-0001 has exactly one unit in stock: the second purchase of it must fail.
INSERT INTO products (sku, name, price_cents, stock) VALUES
    ('KBD-1001',  'Mechanical keyboard',         8999, 25),
    ('MSE-2002',  'Wireless mouse',              2999, 50),
    ('MON-30030', '27-inch monitor',            24900, 8),
    ('CBL-4004',  'USB-C cable, 2 m',             999, 40),
    ('LST-0001',  'Last item in stock',          4999, 1);

INSERT INTO customers (email, full_name, profile_type, country, postal_code) VALUES
    ('ada.lovelace@example.test',   'Ada Lovelace',   'premium',  'GB', 'SW1A 1AA'),
    ('grace.hopper@example.test',   'Grace Hopper',   'premium',  'US', '10001'),
    ('alan.turing@example.test',    'Alan Turing',    'standard', 'GB', 'CB2 1TN'),
    ('emmy.noether@example.test',   'Emmy Noether',   'standard', 'DE', '37073'),
    ('marie.curie@example.test',    'Marie Curie',    'standard', 'FR', '75005'),
    ('acme.purchasing@example.test','ACME Purchasing','business', 'NL', '1012 AB');
