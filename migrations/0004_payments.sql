-- 0004_payments: payments against orders, by card (last four digits) or IBAN (country).
CREATE TABLE payments (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id     bigint      NOT NULL REFERENCES orders (id),
    amount_cents bigint      NOT NULL CHECK (amount_cents > 0),
    method       text        NOT NULL CHECK (method IN ('card', 'iban')),
    card_last4   char(4)     CHECK (card_last4 ~ '^[0-9]{4}$'),
    iban_country char(2)     CHECK (iban_country ~ '^[A-Z]{2}$'),
    status       text        NOT NULL DEFAULT 'pending'
                 CHECK (status IN ('pending', 'authorized', 'captured', 'failed', 'refunded')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT payments_method_details CHECK (
        (method = 'card' AND card_last4 IS NOT NULL AND iban_country IS NULL)
     OR (method = 'iban' AND iban_country IS NOT NULL AND card_last4 IS NULL)
    )
);
