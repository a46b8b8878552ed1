-- 0001_customers: shop customers; email unique case-insensitively via an index on lower(email).
CREATE TABLE customers (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email        text        NOT NULL CHECK (email LIKE '%_@_%'),
    full_name    text        NOT NULL,
    profile_type text        NOT NULL DEFAULT 'standard'
                 CHECK (profile_type IN ('standard', 'premium', 'business')),
    country      char(2)     NOT NULL CHECK (country ~ '^[A-Z]{2}$'),
    postal_code  text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX customers_email_lower_key ON customers (lower(email));
